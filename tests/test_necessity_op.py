"""``necessity`` (MoDS): seed fine-tune once, answers and their scores cached per sample."""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
import pytest

from testkit.cli import alpaca, dslrun_here, write_pool

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")



def spec(tiny) -> str:
    return (f'param lm = "{tiny}"\n'
            'p = load(path: "p.json")\n'
            "seeds = rank(p, by: len(output), top: 3)\n"
            "n = necessity(p, seeds: seeds, pfm: $lm, scorer: deita-quality, scorer_model: $lm, epochs: 1,\n"
            "              batch_size: 2, max_new_tokens: 4, max_length: 64)\n"
            "needy = filter(n, where: necessity_score < 3.5)\n"
            "both = union(seeds, needy)\n"
            "save(both)\n")


@pytest.mark.slow  # trains models for 20-55 s: the default run stays under 15 min
def test_necessity_trains_once_and_caches_answers_and_scores(tiny, tmp_path):
    write_pool(tmp_path / "p.json", alpaca(8))
    (tmp_path / "mods.sel").write_text(spec(tiny))
    first = dslrun_here("mods.sel", "-q", "--out", "o", cwd=tmp_path, check=True)
    assert "fine-tuned" in first.stdout
    scores = {r["id"]: r for r in pq.read_table(tmp_path / "o" / "selected.scores.parquet").to_pylist()}
    selected = json.loads((tmp_path / "o" / "selected.json").read_text())
    assert len(selected) >= 3  # the seeds are always in
    ckpts = list((tmp_path / ".dslrun" / "finetune").iterdir())
    assert len(ckpts) == 1
    again = dslrun_here("mods.sel", "-q", "--out", "o2", cwd=tmp_path, check=True)
    row = next(x.split() for x in again.stdout.splitlines() if x.startswith("n "))
    assert row[4:6] == ["16", "0"]  # 8 answers and 8 scores, every one a cache hit (statistics add up)
    # every answer is cached, so the checkpoint is neither trained nor even loaded
    assert "fine-tuned" not in again.stdout and "seed-tuned checkpoint" not in again.stdout
    assert (tmp_path / "o2" / "selected.json").read_text() == (tmp_path / "o" / "selected.json").read_text()
    for r in scores.values():
        if r.get("necessity_score") is not None:
            assert 1 <= r["necessity_score"] <= 6


def test_scores_are_deita_expectations_of_the_tuned_models_answers(tiny, tmp_path):
    """By hand: merge the cached adapter, answer greedily, score the answer from first-position logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dslrun.operators.evaluation.finetune import FinetuneConfig, load_finetuned
    from dslrun.operators.evaluation.generate import generate
    from dslrun.operators.llm.prompts import DIGITS, JUDGES
    from dslrun.operators.lm.templates import get_template
    from dslrun.runtime.data.pool_files import read_pool

    rows = alpaca(8)
    write_pool(tmp_path / "p.json", rows)
    (tmp_path / "mods.sel").write_text(spec(tiny).replace("save(both)", "save(n)"))
    dslrun_here("mods.sel", "-q", "--out", "o", cwd=tmp_path, check=True)
    got = {r["id"]: r for r in pq.read_table(tmp_path / "o" / "selected.scores.parquet").to_pylist()}
    ids = read_pool(tmp_path / "p.json").table.ids
    (ckpt,) = (tmp_path / ".dslrun" / "finetune").iterdir()
    tok = AutoTokenizer.from_pretrained(tiny)
    base = AutoModelForCausalLM.from_pretrained(tiny).eval()
    cfg = FinetuneConfig(epochs=1, batch_size=2, max_length=64)
    tuned = load_finetuned(base, ckpt, cfg)
    template = get_template("alpaca", tok)
    digit_ids = [tok.convert_tokens_to_ids(d) for d in DIGITS]
    for sid, r in list(zip(ids, rows))[:4]:
        (answer,) = generate(tuned, tok, [template.render(r["instruction"], r["input"])], max_new_tokens=4)
        assert got[sid]["necessity_answer"] == answer
        prompt = JUDGES["deita-quality"].messages({**r, "output": answer})[-1]["content"]
        ids = torch.tensor([tok(prompt)["input_ids"]])
        with torch.no_grad():
            logits = base(ids).logits[0, -1, digit_ids]
        p = torch.softmax(logits.double(), -1)
        want = float((p * torch.arange(1, 7, dtype=torch.float64)).sum())
        assert math.isclose(got[sid]["necessity_score"], want, abs_tol=1e-4)
