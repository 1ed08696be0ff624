"""Nuggets' golden score against the released code's rule (pldlgb/nuggets).

The reference follows ``tasks/loader.py: TokenizedForGenRightPad`` and
``instruction_main.py: do_infer_probs(_zero)`` in our own code: an anchor is tokenised
without special tokens, right-padded and cut to 200 tokens; the answer runs from
``len(query tokens)`` to ``len(full tokens)`` (not cut), and the slices of tokens and
log-probabilities are clamped to the 200 positions, the tokens deciding how many count.
The demonstration is ``tokenizer(text)`` with special tokens, in front of the anchor.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from dslrun.operators.influence.golden import (  # noqa: E402
    answer_logprobs,
    encode_anchor,
    encode_demo,
    golden_score,
    promptify,
)
from testkit.tiny_lm import tiny_gpt2, tiny_tokenizer  # noqa: E402

LONG = " ".join(["Blue is a primary color, and so are red and yellow."] * 25)  # ~330 tokens
ANCHORS = [
    ("Name a primary color.", "", "Blue is a primary color."),
    ("Add the numbers.", "2 and 3", "The sum of two and three is five."),
    ("Describe the colors.", "", LONG),  # answer cut at token 200
    ("Summarise: " + LONG, "", "Colors."),  # query longer than 200: scores 0 both ways
]
CANDIDATES = [("Say a color.", "", "Red."), ("Write about colors.", "", LONG[:400])]


def nuggets_reference(model, tok, anchor, demo_text=None, max_length=200):
    query, full = promptify(*anchor)
    start = len(tok(query, add_special_tokens=False)["input_ids"])
    end = len(tok(full, add_special_tokens=False)["input_ids"])
    enc = tok(full, padding="max_length", max_length=max_length, add_special_tokens=False, truncation=True)
    ids = torch.tensor(enc["input_ids"])
    mask = torch.tensor(enc["attention_mask"])
    head = torch.tensor(tok(demo_text)["input_ids"] if demo_text is not None else [], dtype=torch.long)
    with torch.no_grad():
        logits = model(input_ids=torch.cat([head, ids])[None],
                       attention_mask=torch.cat([torch.ones_like(head), mask])[None]).logits[0, len(head):]
    logp = logits.double().log_softmax(-1)
    tokens = ids[start:end]
    rows = logp[start - 1:end - 1][:len(tokens)]  # gather with fewer index rows uses the first ones
    return float(rows.gather(-1, tokens[:, None]).sum()) if len(tokens) else 0.0


@pytest.mark.parametrize("bos", [False, True], ids=["no-bos", "bos"])
def test_golden_score_equals_the_released_rule_with_long_anchors(bos):
    tok = tiny_tokenizer([LONG, "Instruction:\nInput:\nResponse:\n"], with_bos=bos)
    model = tiny_gpt2(len(tok), n_positions=1024)
    assert len(tok(promptify(*ANCHORS[2])[1], add_special_tokens=False)["input_ids"]) > 300
    anchors = [encode_anchor(tok, *a) for a in ANCHORS]
    assert all(len(a.ids) <= 200 for a in anchors) and all(a.ids[0] != 1 for a in anchors)
    zero = answer_logprobs(model, anchors, tok.pad_token_id, token_budget=500)
    want_zero = [nuggets_reference(model, tok, a) for a in ANCHORS]
    assert zero == pytest.approx(want_zero, abs=1e-3)
    assert zero[3] == 0.0
    for cand in CANDIDATES:
        demo_text = promptify(*cand)[1]
        one = answer_logprobs(model, anchors, tok.pad_token_id, encode_demo(tok, *cand), token_budget=500)
        want_one = [nuggets_reference(model, tok, a, demo_text) for a in ANCHORS]
        assert one == pytest.approx(want_one, abs=1e-3)
        assert golden_score(zero, one) == golden_score(want_zero, want_one)
