"""Cherry LLM IFD against the released scripts' rule, long samples included.

The reference below follows ``cherry_seletion/data_analysis.py`` (mod ``cherry``) and
``data_by_IFD.py`` step by step, in our own code: every text encoded whole with
``tokenizer.encode(..., truncation=True, max_length=...)``, per-token losses of the
truncated texts, the direct text cut at ``max_length - prompt_len + 4``, and the skips
(``max_length - prompt_len > 0``, ``len > 0`` on both sides, ``prompt_len + len_direct >
max_length``, IFD > 1).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from dslrun.operators.lm import ALPACA, ifd_scores  # noqa: E402
from testkit.tiny_lm import tiny_gpt2, tiny_tokenizer  # noqa: E402

TOL = 1e-5
LONG = " ".join(["Blue is a primary color, and so are red and yellow."] * 60)  # ~700 tokens
SAMPLES = [  # (instruction, input, output)
    ("Name a primary color.", "", "Blue is a primary color."),
    ("Add the numbers.", "2 and 3", "The sum of two and three is five."),
    ("Write a long answer.", "", LONG),  # response over 512 tokens
    ("Describe colours.", "primary ones", LONG[:900]),  # near the limit
    ("Summarise this: " + LONG, "", "Colors."),  # prompt over 512 tokens
    ("Say nothing.", "", ""),
]


def cherry_reference(model, tok, instruction, input_, output, max_length=512, header="### Response:", slack=4):
    """(IFD, loss_conditioned, loss_direct) as Cherry's two scripts compute them, or None when
    they skip the sample."""

    def enc(text, limit=None):
        if limit is None:
            return tok.encode(text)
        return tok.encode(text, truncation=True, max_length=limit)

    def token_losses(ids):
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double()
        logp = logits.log_softmax(-1)
        return [-logp[i - 1, ids[i]].item() for i in range(1, len(ids))]

    prompt = ALPACA.render(instruction, input_)
    whole, direct_text = prompt + output, header + output
    prompt_len = len(enc(prompt, max_length))
    if not max_length - prompt_len > 0:
        return None
    parts = []
    for text, limit in ((direct_text, max_length - prompt_len + slack), (whole, max_length)):
        ids = enc(text, limit)
        start = len(enc(text[:text.rfind(output)]))
        losses = token_losses(ids) if len(ids) > 1 else []
        parts.append((len(ids) - start, losses[start - 1:len(ids) - 1]))
    (n_direct, l_direct), (n_cond, l_cond) = parts
    if n_direct <= 0 or n_cond <= 0 or prompt_len + n_direct > max_length:
        return None
    mean_d, mean_c = sum(l_direct) / len(l_direct), sum(l_cond) / len(l_cond)
    return mean_c / mean_d, mean_c, mean_d


@pytest.mark.parametrize("bos", [False, True], ids=["no-bos", "bos"])
def test_cherry_ifd_equals_the_released_scripts_on_samples_over_512_tokens(bos):
    tok = tiny_tokenizer([ALPACA.prompt_input, ALPACA.prompt_no_input, LONG], with_bos=bos)
    model = tiny_gpt2(len(tok), n_positions=1024)
    assert len(tok.encode(ALPACA.render("x") + LONG)) > 600
    prompts = [ALPACA.render(i, x) for i, x, _ in SAMPLES]
    got = ifd_scores(model, tok, prompts, [o for _, _, o in SAMPLES], variant="cherry", batch_size=3)
    skipped_long = 0
    for (ins, inp, out), s in zip(SAMPLES, got, strict=True):
        ref = cherry_reference(model, tok, ins, inp, out)
        if ref is None:
            assert s.ifd is None and s.reason, (ins[:30], s)
            skipped_long += "Cherry skips it" in s.reason
            continue
        ifd, loss_c, loss_d = ref
        assert s.ifd is not None, (ins[:30], s.reason)
        assert abs(s.ifd - ifd) < TOL and abs(s.loss_conditioned - loss_c) < TOL
        assert abs(s.loss_direct - loss_d) < TOL
        assert s.valid == (ifd <= 1)
    # Without a BOS, "### Response:" is 3 tokens here: slack 4 leaves one token too many and
    # a long response is skipped; with a BOS the slack equals the header and it is scored cut.
    long_scored = got[2].ifd is not None
    assert long_scored == bos
    assert "longer than max_length (Cherry skips it)" in (got[2].reason or "") or bos
    assert got[4].reason.startswith("prompt too long")
    assert skipped_long >= 1
