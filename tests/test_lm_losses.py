"""IFD / loss kernels against hand-computed values on a tiny GPT-2 built here (no downloads)."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from dslrun.operators.lm import (  # noqa: E402
    ALPACA,
    SUPERFILTERING,
    VICUNA,
    ChatTemplate,
    PromptTemplate,
    TemplateError,
    aggregate_turns,
    conversation_pairs,
    ifd_conversations,
    ifd_scores,
    load_template_file,
    response_logprobs,
    response_losses,
)
from dslrun.operators.lm.ifd import VARIANTS, finish  # noqa: E402

TOL = 1e-5
CORPUS = [
    ALPACA.prompt_input, ALPACA.prompt_no_input, VICUNA.prompt_no_input,
    "Name a primary color. Blue is a primary color, and so are red and yellow.",
    "Add 2 and 3. The sum of two and three is five.",
    '### Response:"Hi" she said. ### Response:"Yes" ### Response:"No"',  # learns the merge `:"`
]
SAMPLES = [  # (instruction, input, output)
    ("Name a primary color.", "", "Blue is a primary color."),
    ("Add the numbers.", "2 and 3", "5"),
    ("Write a haiku about the sea.", "", "Waves fold into foam,\nsalt wind carries gull voices,\nthe tide keeps its time."),
    ("Translate to French.", "good morning", "Bonjour, et bonne journée à vous aussi !"),
    ("Say yes.", "", "Yes"),
    ("Quote a greeting.", "", '"Hi" she said.'),  # `:"` spans the prompt/response boundary
]


def build_tokenizer(with_bos: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=360, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tk.train_from_iterator(CORPUS * 4, trainer)
    if with_bos:
        tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>")


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(with_bos=False)


@pytest.fixture(scope="module")
def tok_bos():
    return build_tokenizer(with_bos=True)


@pytest.fixture(scope="module")
def model(tok):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=len(tok), n_positions=256,
                     bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return GPT2LMHeadModel(cfg).eval()


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def ref_nll(model, seq, start):
    """Unbatched forward pass + manual log-softmax: (summed NLL, count) of seq[start:]."""
    with torch.no_grad():
        logits = model(torch.tensor([seq])).logits[0].double()
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    nll = -sum(logp[t - 1, seq[t]].item() for t in range(start, len(seq)))
    return nll, len(seq) - start


def prompts_and_outputs(template):
    return [template.render(i, x) for i, x, _ in SAMPLES], [o for _, _, o in SAMPLES]


# ------------------------------------------------------------------ templates
def test_alpaca_and_superfiltering_strings_are_the_originals():
    assert ALPACA.render("Do it.") == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nDo it.\n\n### Response:")
    assert ALPACA.render("Do it.", "data") == (
        "Below is an instruction that describes a task, paired with an input that provides further "
        "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
        "Do it.\n\n### Input:\ndata\n\n### Response:")
    assert ALPACA.direct_prefix == "### Response:"
    assert SUPERFILTERING.render("Do it.") == "Do it.\n"
    assert SUPERFILTERING.render("Do it.", "data") == "Do it.\ndata\n"
    assert VICUNA.render("Hi").endswith("questions. USER: Hi ASSISTANT:")


def test_custom_template_files(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({
        "prompt_input": "Q: {instruction} [{input}]\nA:", "prompt_no_input": "Q: {instruction}\nA:",
        "direct_prefix": "A:"}))
    t = load_template_file(tmp_path / "t.json")
    assert (t.name, t.render("x"), t.render("x", "y"), t.direct_prefix) == ("t", "Q: x\nA:", "Q: x [y]\nA:", "A:")
    (tmp_path / "t.yaml").write_text('prompt_no_input: "Q: {instruction}\\n"\n')
    assert load_template_file(tmp_path / "t.yaml").render("x") == "Q: x\n"
    (tmp_path / "plain.txt").write_text("{instruction}\n{input}\n---\n")
    assert load_template_file(tmp_path / "plain.txt").render("x") == "x\n\n---\n"
    with pytest.raises(TemplateError, match="unknown field"):
        PromptTemplate("bad", "{instruction} {context}", "{instruction}")
    with pytest.raises(TemplateError, match="no \\{input\\} slot"):
        PromptTemplate("noinput", "{instruction}", "{instruction}").render("x", "y")
    (tmp_path / "bad.json").write_text(json.dumps({"prompt_no_input": "{instruction}", "sytem": ""}))
    with pytest.raises(TemplateError, match="unknown key"):
        load_template_file(tmp_path / "bad.json")


def test_multi_turn_pairs_string_and_chat_templates(tok):
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Bye."}]
    pairs = conversation_pairs(conv, ALPACA)
    assert pairs[0] == ("Be brief.\n\n" + ALPACA.render("Hi"), "Hello.")
    assert pairs[1] == (pairs[0][0] + "Hello.\n\n### Instruction:\nBye\n\n### Response:", "Bye.")
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    try:
        chat = ChatTemplate(tok)
        cp = conversation_pairs(conv, chat)
        assert cp[1] == ("<|system|>Be brief.\n<|user|>Hi\n<|assistant|>Hello.\n<|user|>Bye\n<|assistant|>", "Bye.")
        assert chat.direct_prefix == "<|assistant|>"
    finally:
        tok.chat_template = None
    with pytest.raises(TemplateError, match="assistant turn without a user"):
        conversation_pairs([{"role": "assistant", "content": "x"}], ALPACA)


# ------------------------------------------------------------------ losses
@pytest.mark.parametrize("bos", [False, True])
def test_response_losses_equal_manual_forward(model, tok, tok_bos, bos):
    t = tok_bos if bos else tok
    prompts, outputs = prompts_and_outputs(ALPACA)
    got = response_logprobs(model, t, prompts, outputs)
    for p, o, s in zip(prompts, outputs, got, strict=True):
        head = ([1] if bos else []) + ids(t, p)
        nll, n = ref_nll(model, head + ids(t, o), len(head))
        assert s.n_tokens == n and abs(-s.sum_logprob - nll) < TOL
        assert abs(s.mean_nll - nll / n) < TOL and abs(s.ppl - math.exp(nll / n)) < 1e-3 * s.ppl
    # whole-text perplexity: empty prompt; without BOS the first token has no context
    whole = response_logprobs(model, tok, [""], [outputs[0]])[0]
    nll, n = ref_nll(model, ids(tok, outputs[0]), 1)
    assert whole.n_tokens == n and abs(-whole.sum_logprob - nll) < TOL


def test_batch_size_padding_side_and_order_do_not_matter(model, tok_bos):
    prompts, outputs = prompts_and_outputs(ALPACA)
    base = response_losses(model, tok_bos, prompts, outputs, batch_size=1)
    order = list(range(len(prompts)))
    random.Random(3).shuffle(order)
    by_len = sorted(order, key=lambda i: len(prompts[i] + outputs[i]))
    for bs in (2, 3, None):
        for side in ("right", "left"):
            for perm in (order, by_len[::-1]):
                got = response_losses(model, tok_bos, [prompts[i] for i in perm],
                                      [outputs[i] for i in perm], batch_size=bs, padding_side=side)
                for i, g in zip(perm, got, strict=True):
                    assert abs(g - base[i]) < TOL, (bs, side, i)


def test_model_without_logits_to_keep_gives_same_losses(model, tok):
    class Plain(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=None):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              position_ids=position_ids, use_cache=use_cache)

    prompts, outputs = prompts_and_outputs(ALPACA)
    a = response_losses(model, tok, prompts, outputs, padding_side="left")
    b = response_losses(Plain(model), tok, prompts, outputs, padding_side="left")
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < TOL


def test_max_length_truncates_the_response_from_the_right(model, tok):
    p, o = ALPACA.render("Write a haiku about the sea."), SAMPLES[2][2]
    head = ids(tok, p)
    s = response_logprobs(model, tok, [p], [o], max_length=len(head) + 4)[0]
    nll, n = ref_nll(model, head + ids(tok, o)[:4], len(head))
    assert (s.n_tokens, n) == (4, 4) and abs(-s.sum_logprob - nll) < TOL
    assert response_losses(model, tok, [p], [o], max_length=len(head)) == [None]


# ------------------------------------------------------------------ IFD
@pytest.mark.parametrize("bos", [False, True])
def test_cherry_ifd_is_ratio_of_mean_losses(model, tok, tok_bos, bos):
    t = tok_bos if bos else tok
    prompts, outputs = prompts_and_outputs(ALPACA)
    got = ifd_scores(model, t, prompts, outputs, variant="cherry", batch_size=2)
    b = [1] if bos else []
    for p, o, s in zip(prompts, outputs, got, strict=True):
        # as the original: whole text encoded, scored from len(encode(text before response))
        lc = ref_nll(model, b + ids(t, p + o), len(b + ids(t, p)))
        ld = ref_nll(model, b + ids(t, "### Response:" + o), len(b + ids(t, "### Response:")))
        loss_c, loss_d = lc[0] / lc[1], ld[0] / ld[1]
        assert (lc[1], ld[1]) == (s.n_conditioned, s.n_direct)
        assert abs(s.loss_conditioned - loss_c) < TOL and abs(s.loss_direct - loss_d) < TOL
        assert abs(s.ifd - loss_c / loss_d) < TOL
        assert abs(s.ppl_conditioned / math.exp(loss_c) - 1) < TOL
        assert s.reason == ("ifd > 1" if loss_c / loss_d > 1 else None)


@pytest.mark.parametrize("bos", [False, True])
def test_superfiltering_ifd_is_ratio_of_perplexities(model, tok, tok_bos, bos):
    t = tok_bos if bos else tok
    prompts, outputs = prompts_and_outputs(SUPERFILTERING)
    got = ifd_scores(model, t, prompts, outputs, variant="superfiltering", padding_side="left")
    b = [1] if bos else []
    for p, o, s in zip(prompts, outputs, got, strict=True):
        r = ids(t, o)
        if not bos and len(r) == 1:  # nothing left to score in the direct text
            assert s.ifd is None and "single-token" in s.reason
            continue
        lc = ref_nll(model, b + ids(t, p + o), len(b + ids(t, p)))
        ld = ref_nll(model, b + r, 1)  # labels=input_ids: every token but the first
        assert s.n_direct == (len(r) if bos else len(r) - 1)
        ifd = math.exp(lc[0] / lc[1]) / math.exp(ld[0] / ld[1])
        assert abs(s.ifd - ifd) < TOL and abs(s.loss_direct - ld[0] / ld[1]) < TOL
        assert s.reason == (None if ifd < 1 else "ifd >= 1")


def test_token_spanning_the_boundary_is_scored_as_the_original_does(model, tok):
    p, o = ALPACA.render(SAMPLES[5][0]), SAMPLES[5][2]
    whole, head = ids(tok, p + o), ids(tok, p)
    assert whole[:len(head)] != head, "the test tokenizer should merge `:\"` across the boundary"
    s = ifd_scores(model, tok, [p], [o], variant="cherry")[0]
    lc = ref_nll(model, whole, len(head))  # scoring starts after len(encode(prompt)) tokens
    assert s.n_conditioned == len(whole) - len(head) and abs(s.loss_conditioned - lc[0] / lc[1]) < TOL


def test_truncation_rules(model, tok):
    p, o = ALPACA.render("Write a haiku about the sea."), SAMPLES[2][2]
    P, r = len(ids(tok, p)), ids(tok, o)
    # cherry: conditioned text cut at max_length, direct text at max_length - P + 4; with
    # "### Response:" 3 tokens and no BOS, a cut response has P + (12 + 4 - 3) > P + 12 and
    # Cherry skips it (tests/fidelity/test_cherry_ifd.py runs the full rule)
    D = len(ids(tok, "### Response:"))
    assert D == 3
    s = ifd_scores(model, tok, [p], [o], variant="cherry", max_length=P + 12)[0]
    assert s.ifd is None and s.reason.startswith("longer than max_length (Cherry skips it)")
    whole, direct = ids(tok, p + o), ids(tok, "### Response:" + o)
    n = len(direct) - D  # a max_length that just fits the response is scored whole
    s = ifd_scores(model, tok, [p], [o], variant="cherry", max_length=P + n)[0]
    lc, ld = ref_nll(model, whole[:P + n], P), ref_nll(model, direct, D)
    assert (s.n_conditioned, s.n_direct) == (lc[1], ld[1])
    assert abs(s.ifd - (lc[0] / lc[1]) / (ld[0] / ld[1])) < TOL
    # cherry skips a prompt that fills max_length
    s = ifd_scores(model, tok, [p], [o], variant="cherry", max_length=P)[0]
    assert s.ifd is None and s.reason.startswith("prompt too long")
    assert ifd_scores(model, tok, [p], [o], variant="cherry", max_length=P + 1)[0].reason != s.reason
    # superfiltering: direct text = response[: max_length - prompt_tokens + 1], first unscored
    sp = SUPERFILTERING.render("Write a haiku about the sea.")
    SP = len(ids(tok, sp))
    s = ifd_scores(model, tok, [sp], [o], variant="superfiltering", max_length=SP + 5)[0]
    ld = ref_nll(model, r[:6], 1)
    lc = ref_nll(model, ids(tok, sp) + r[:5], SP)
    assert (s.n_conditioned, s.n_direct) == (5, 5)
    assert abs(s.ifd - math.exp(lc[0] / 5) / math.exp(ld[0] / 5)) < TOL
    s = ifd_scores(model, tok, [sp], [o], variant="superfiltering", max_length=SP)[0]
    assert s.ifd is None and s.reason.startswith("response truncated away by max_length")


def test_invalid_samples_keep_a_reason(model, tok):
    got = ifd_scores(model, tok, [ALPACA.render("x"), SUPERFILTERING.render("y")], ["", ""])
    assert [g.reason for g in got] == ["empty response", "empty response"]
    assert all(g.ifd is None and not g.valid for g in got)
    # boundaries: cherry keeps IFD == 1, superfiltering needs IFD < 1
    assert finish(VARIANTS["cherry"], 2.0, 2, 2.0, 2).reason is None
    assert finish(VARIANTS["superfiltering"], 2.0, 2, 2.0, 2).reason == "ifd >= 1"
    assert finish(VARIANTS["cherry"], 2.2, 2, 2.0, 2).reason == "ifd > 1"


def test_multi_turn_aggregation(model, tok):
    conv = [{"role": "user", "content": "Name a primary color."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another one?"},
            {"role": "assistant", "content": "Red, and yellow too."},
            {"role": "user", "content": "Thanks"}, {"role": "assistant", "content": ""}]
    pairs = conversation_pairs(conv, ALPACA)
    turns = ifd_scores(model, tok, [p for p, _ in pairs], [r for _, r in pairs])
    assert turns[2].reason == "empty response"
    pooled = ifd_conversations(model, tok, [pairs], variant="cherry")[0]
    loss_c = (turns[0].nll_conditioned + turns[1].nll_conditioned) / (turns[0].n_conditioned + turns[1].n_conditioned)
    loss_d = (turns[0].nll_direct + turns[1].nll_direct) / (turns[0].n_direct + turns[1].n_direct)
    assert abs(pooled.ifd - loss_c / loss_d) < TOL and pooled.n_conditioned == turns[0].n_conditioned + turns[1].n_conditioned
    mean = aggregate_turns(turns, "cherry", rule="mean")
    assert abs(mean.ifd - (turns[0].ifd + turns[1].ifd) / 2) < TOL
    assert aggregate_turns(turns[2:], "cherry").reason.startswith("no scorable assistant turn")


def test_importing_kernels_does_not_import_torch():
    code = "import sys, dslrun.operators.lm; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pack_by_length_bounds_padding_and_budget():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from dslrun.operators.lm.losses import pack_by_length

    @settings(max_examples=200, deadline=None)
    @given(lengths=st.lists(st.integers(1, 600), max_size=60), budget=st.integers(64, 4096),
           pad=st.floats(0.0, 0.5))
    def check(lengths, budget, pad):
        groups = pack_by_length(lengths, budget, pad)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        for g in groups:
            longest, real = max(lengths[i] for i in g), sum(lengths[i] for i in g)
            if len(g) > 1:  # a lone sequence may exceed the budget; it still runs
                assert len(g) * longest <= budget and len(g) * longest - real <= pad * len(g) * longest + 1e-9

    check()
