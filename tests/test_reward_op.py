"""``reward``: a sequence-classification reward model's first logit for (question, answer) pairs."""

from __future__ import annotations

import json

import pytest

from testkit.cli import alpaca, dslrun_here, write_pool

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from testkit.tiny_lm import save_tiny_lm  # noqa: E402


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory):
    """A tiny GPT-2 sequence classifier (1 label) sharing the tiny LM's tokenizer."""
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

    folder = save_tiny_lm(tmp_path_factory.mktemp("tiny") / "rm")
    torch.manual_seed(3)
    cfg = GPT2Config.from_pretrained(folder)
    cfg.num_labels = 1
    GPT2ForSequenceClassification(cfg).save_pretrained(folder)
    assert AutoTokenizer.from_pretrained(folder).pad_token_id == 0
    return folder


def test_scores_equal_one_pair_at_a_time_by_hand(tiny_rm, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from dslrun.operators.reward import Reward, RewardParams
    from dslrun.runtime.data.pool_files import read_pool
    from dslrun.runtime.execution.context import RunContext
    from dslrun.runtime.execution.sample_runner import run_sample_op

    rows = alpaca(6)
    write_pool(tmp_path / "p.json", rows)
    table = read_pool(tmp_path / "p.json").table
    got = run_sample_op(Reward(RewardParams(model=str(tiny_rm))), table,
                        RunContext(out_dir=tmp_path, spec_dir=tmp_path, cache=None)).column("reward")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm).eval()
    tok = AutoTokenizer.from_pretrained(tiny_rm)
    for r, score in zip(rows, got):
        question = r["instruction"] + ("\n" + r["input"] if r["input"] else "")
        enc = tok(question, r["output"], return_tensors="pt")  # one pair, no padding
        with torch.no_grad():
            want = model(**enc).logits[0, 0].item()
        assert score == pytest.approx(want, abs=1e-4)
    assert len(set(got.tolist())) > 1


def test_reward_filter_in_a_spec_is_cached(tiny_rm, tmp_path):
    write_pool(tmp_path / "p.json", alpaca(8))
    (tmp_path / "s.sel").write_text(f'p = load(path: "p.json")\nr = reward(p, model: "{tiny_rm}")\n'
                                    "k = rank(r, by: reward, top: 3)\nsave(k)\n")
    dslrun_here("s.sel", "-q", "--out", "o", cwd=tmp_path, check=True)
    assert len(json.loads((tmp_path / "o" / "selected.json").read_text())) == 3
    again = dslrun_here("s.sel", "-q", "--out", "o", cwd=tmp_path, check=True)
    row = next(x.split() for x in again.stdout.splitlines() if x.startswith("r "))
    assert row[4:6] == ["8", "0"]
