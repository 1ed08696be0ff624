"""``evaluate`` with a tiny model: fine-tuning learns and is cached; a whole run judged by a scripted server."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from dslrun.operators.evaluation import finetune as ft  # noqa: E402
from dslrun.operators.lm.templates import ALPACA  # noqa: E402
from testkit.cli import dslrun, write_pool  # noqa: E402
from testkit.openai_server import OpenAITestServer  # noqa: E402

KEY_ENV = "DSLRUN_TEST_JUDGE_KEY"


def records(n: int, start: int = 0) -> list[dict]:
    colors = ["Blue", "Red", "Yellow"]
    return [{"instruction": f"Name a primary color {i}.", "input": "",
             "output": f"{colors[i % 3]} is a primary color."} for i in range(start, start + n)]


def samples(n: int) -> list[dict]:
    return [{"id": f"s{i}", **r, "n_turns": 1} for i, r in enumerate(records(n))]


def _load(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.pad_token = tok.pad_token or tok.eos_token
    return model.eval(), tok


def test_labels_mask_the_prompt(tiny):
    _, tok = _load(tiny)
    pieces = ft.segments({"instruction": "Add 2 and 3.", "input": "", "output": "five"}, ALPACA)
    ids, labels = ft.encode(tok, pieces, 512)
    n_prompt = len(tok(pieces[0][0], add_special_tokens=False)["input_ids"])
    assert labels[:n_prompt] == [-100] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:] and ids[-1] == tok.eos_token_id
    # multi-turn: both assistant turns learnt, the second user turn masked
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Farewell"}]
    pieces = ft.segments({"messages": msgs, "n_turns": 2}, ALPACA)
    assert [learn for _, learn in pieces] == [False, True, False, True]
    assert "".join(t for t, _ in pieces) == ALPACA.prompts(msgs)[-1][0] + "Farewell"


@pytest.mark.parametrize("method", ["lora", "full"])
def test_finetune_lowers_the_loss_and_is_cached(tiny, tmp_path, method):
    import torch

    base, tok = _load(tiny)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    data = samples(12)
    cfg = ft.FinetuneConfig(method=method, epochs=6, lr=2e-2 if method == "lora" else 1e-3, batch_size=4,
                            micro_batch=2, max_length=256, seed=1, lora_targets=("c_attn", "c_proj", "c_fc"))
    loss0 = ft.mean_loss(base, tok, data, ALPACA, 256)["loss"]
    key = ft.checkpoint_key("tiny", [s["id"] for s in data], cfg)
    out = tmp_path / key
    res = ft.finetune(base, tok, data, ALPACA, cfg, out)
    assert res.steps == 18 and not res.cached and res.n_samples == 12
    assert res.epoch_losses[-1] < res.epoch_losses[0]
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # the base is untouched
    tuned = ft.load_finetuned(base, out, cfg)
    assert ft.mean_loss(tuned, tok, data, ALPACA, 256)["loss"] < loss0 - 0.3
    # The same subset and settings: the same key, and the checkpoint is found instead of retrained.
    assert ft.checkpoint_key("tiny", [s["id"] for s in reversed(data)], cfg) == key
    again = ft.load_cached(out)
    assert again is not None and again.cached and again.losses == res.losses
    assert ft.checkpoint_key("tiny", [s["id"] for s in data[:-1]], cfg) != key
    assert ft.checkpoint_key("tiny", [s["id"] for s in data], cfg.__class__(**{**cfg.__dict__, "lr": 1e-4})) != key


def review(request: dict) -> str:
    """A judge that prefers the longer answer, shown first or not."""
    user = request["messages"][-1]["content"]
    a1 = re.search(r"Assistant 1's Answer\]\n(.*?)\n\n\[The End of Assistant 1", user, re.S).group(1)
    a2 = re.search(r"Assistant 2's Answer\]\n(.*?)\n\n\[The End of Assistant 2", user, re.S).group(1)
    s1, s2 = (8, 6) if len(a1) > len(a2) else (6, 8) if len(a1) < len(a2) else (7, 7)
    return f"{s1} {s2}\nThe longer answer is more detailed."


@pytest.mark.slow  # trains models for 20-55 s: the default run stays under 15 min
def test_evaluate_run_end_to_end(tiny, tmp_path):
    write_pool(tmp_path / "pool.json", records(24))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps({"text": f"Name a color {i}."}) + "\n"
                                                 for i in range(3)))
    write_pool(tmp_path / "heldout.json", records(4, start=100))
    (tmp_path / "bench_plugin.py").write_text(  # a benchmark scorer plug-in: likelihood of known answers
        "import math\nfrom dslrun.operators.evaluation.finetune import mean_loss\n"
        "def score(model, tok, template):\n"
        "    qa = [{'instruction': 'Name a primary color.', 'input': '', 'output': 'Blue.', 'n_turns': 1}]\n"
        "    return {'likelihood': math.exp(-mean_loss(model, tok, qa, template, 256)['loss'])}\n")
    (tmp_path / "spec.sel").write_text(
        'pool = load(path: "pool.json")\n'
        'picked = sample(pool, n: 8, seed: 3)\n'
        f'evaluate(picked, pool: pool, counterparts: [full, random], pfm: "{tiny}", eval: ["eval.jsonl"],\n'
        '         heldout: "heldout.json", benchmarks: ["bench_plugin:score"], epochs: 1, batch_size: 4, max_length: 256, max_new_tokens: 6,\n'
        '         judge: {base_url: $url, model: "test-model", api_key_env: "' + KEY_ENV + '"})\n'
        'param url = "http://x"\n')
    with OpenAITestServer(reply=review) as srv:
        args = ("run", "spec.sel", "-q", "--out", "out", "--set", f"url={srv.base_url}", "--allow-code")
        proc = dslrun(*args, cwd=tmp_path, env={KEY_ENV: "k"}, check=True)
        first = srv.total
        again = dslrun(*args, cwd=tmp_path, env={KEY_ENV: "k"}, check=True)
        assert srv.total == first  # every review came from the cache
    assert "trained 8 samples" in proc.stdout and "reused 8 samples" in again.stdout
    assert "trained" not in again.stdout.replace("reused", "")
    res = json.loads((tmp_path / "out" / "evaluate_3" / "results.json").read_text())
    assert res["selected"] == 8 and res["pool"] == 24 and res["sdf"] == pytest.approx(8 / 24)
    assert set(res["counterparts"]) == {"full", "random"}
    reviews = [json.loads(x) for x in (tmp_path / "out" / "evaluate_3" / "reviews.jsonl").read_text().splitlines()]
    for name, d in res["counterparts"].items():
        t = d["total"]
        assert t["n"] == 3 and t["win"] + t["tie"] + t["loss"] == 3
        mine = [r for r in reviews if r["counterpart"] == name]
        wins = sum(len(r["sem"]) > len(r["other"]) for r in mine)
        losses = sum(len(r["sem"]) < len(r["other"]) for r in mine)
        assert (t["win"], t["loss"]) == (wins, losses)  # a consistent judge: its preference in both orders
        assert d["pir"] == pytest.approx(t["winning_score"])  # one evaluation set
    eff = res["efficiency"]
    assert eff["against"] == "full" and eff["pir"] == res["counterparts"]["full"]["pir"]
    assert (tmp_path / "out" / "evaluate_3" / "efficiency.png").stat().st_size > 1000
    assert res["models"]["sem"]["heldout"]["loss"] > 0 and "pfm" in res["models"]
    b = {k: res["models"][k]["benchmarks"]["likelihood"] for k in ("sem", "full")}
    assert 0 < b["sem"] < 1
    assert res["counterparts"]["full"]["benchmark_ratio"]["mean"] == pytest.approx(b["sem"] / b["full"])


def test_evaluate_judges_answers_made_elsewhere(tmp_path):
    qs = [f"Question {i}?" for i in range(4)]
    sem = ["a long and detailed answer", "short", "same", "another long answer"]
    other = ["brief", "a much longer reply here", "same", "tiny"]
    (tmp_path / "sem.jsonl").write_text("".join(json.dumps({"instruction": q, "answer": a}) + "\n"
                                                for q, a in zip(qs, sem)))
    (tmp_path / "other.json").write_text(json.dumps([{"prompt": q, "response": a} for q, a in zip(qs, other)]))
    write_pool(tmp_path / "pool.json", records(3))
    (tmp_path / "spec.sel").write_text(
        'pool = load(path: "pool.json")\n'
        'evaluate(pool, sem_answers: "sem.jsonl", counterpart_answers: "other.json", out: "ev",\n'
        '         judge: {base_url: $url, model: "test-model", api_key_env: "' + KEY_ENV + '"})\n'
        'param url = "http://x"\n')
    with OpenAITestServer(reply=review) as srv:
        dslrun("run", "spec.sel", "-q", "--out", "out", "--set", f"url={srv.base_url}", cwd=tmp_path,
               env={KEY_ENV: "k"}, check=True)
        assert srv.total == 7  # 4 pairs x 2 orders, the equal pair's two orders are one request
    res = json.loads((tmp_path / "out" / "ev" / "results.json").read_text())
    t = res["counterparts"]["counterpart"]["total"]
    assert (t["win"], t["tie"], t["loss"]) == (2, 1, 1) and t["winning_score"] == pytest.approx(1.25)
    assert "models" not in res  # nothing was trained


@pytest.mark.slow
def test_shipped_demo_recipe_runs_and_reports(tmp_path):
    """specs/evaluate_demo.sel with the offline SmolLM2 (smaller than its defaults, to keep CI short)."""
    from dslrun.runtime.models import ModelResolutionError

    try:
        from dslrun.runtime.models.resident import resolve

        resolve("smollm2-135m", "causal-lm")
    except ModelResolutionError as e:
        pytest.skip(f"SmolLM2 not available offline: {e}")
    import subprocess
    import sys

    from testkit.cli import SPECS

    # Two fine-tunings of a 135M model: minutes on a 2-core CPU, more on a busy one.
    proc = subprocess.run([sys.executable, "-m", "dslrun.runtime.cli", "run", str(SPECS / "evaluate_demo.sel"),
                           "--set", "k=8", "--set", "prompts=2", "-q", "--out", "out"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sem vs random:" in proc.stdout and "report: out/report.html" in proc.stdout
    res = json.loads((tmp_path / "out" / "evaluate_5" / "results.json").read_text())
    t = res["counterparts"]["random"]["total"]
    assert t["n"] == 2 and res["sdf"] == pytest.approx(8 / 1000)
    assert res["models"]["sem"]["train"]["steps"] == 2 and res["models"]["sem"]["heldout"]["loss"] > 0
    html = (tmp_path / "out" / "report.html").read_text()
    assert 'id="evaluation"' in html and "data:image/png;base64," in html
