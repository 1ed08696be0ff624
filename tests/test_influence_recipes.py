"""specs/less.sel and specs/nuggets.sel end to end with the offline SmolLM2-135M-Instruct. Slow: marked."""

from __future__ import annotations

import json

import pytest

from testkit.cli import SPECS, dslrun

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytestmark = pytest.mark.slow




def test_less_recipe_on_real_samples(model_cache, tmp_path):
    import pyarrow.parquet as pq

    env = {"DSLRUN_MODEL_CACHE": str(model_cache)}
    rows = [json.loads(line) for line in (SPECS / "data" / "less_target_dolly.jsonl").read_text().splitlines()]
    target = tmp_path / "target.jsonl"  # one example per subtask keeps the test short
    target.write_text("".join(json.dumps(r) + "\n" for r in rows[::4]))
    args = [str(SPECS / "less.sel"), "--set", "limit=8", "--set", "r=4", "--set", "epochs=1", "--set", "dim=128",
            "--set", "fraction=0.25", "--set", f"target={target}", "-q", "--out", "o"]
    first = dslrun(*args, cwd=tmp_path, env=env, check=True)
    assert "trained on 2 samples, 1 checkpoints" in first.stdout
    scores = pq.read_table(tmp_path / "o" / "selected.scores.parquet").to_pylist()
    assert len(scores) == 2 and len(json.loads((tmp_path / "o" / "selected.json").read_text())) == 2
    assert all(-1 <= s["less_score"] <= 1 for s in scores)
    assert {s["less_score_subtask"] for s in scores} <= {"closed_qa", "summarization", "classification"}
    again = dslrun(*args, cwd=tmp_path, env=env, check=True)
    assert "checkpoints reused" in again.stdout
    row = next(line.split() for line in again.stdout.splitlines() if line.startswith("scored "))
    assert row[4:6] == ["11", "0"]  # 8 candidates + 3 target examples, all cached

def test_nuggets_recipe_on_real_samples(model_cache, tmp_path):
    import pyarrow.parquet as pq

    env = {"DSLRUN_MODEL_CACHE": str(model_cache)}
    spec = tmp_path / "few_anchors.json"  # 8 of Nuggets' anchors keep the test short
    spec.write_text(json.dumps(json.loads((SPECS / "data" / "nuggets_anchors_kmeans_100.json").read_text())[:8]))
    args = [str(SPECS / "nuggets.sel"), "--set", "limit=6", "--set", f"anchors={spec}", "--set", "fraction=0.5",
            "-q", "--out", "o"]
    dslrun(*args, cwd=tmp_path, env=env, check=True)
    scores = pq.read_table(tmp_path / "o" / "selected.scores.parquet").to_pylist()
    assert len(scores) == 3
    assert all(s["golden_score"] in {i / 8 for i in range(9)} for s in scores)
    assert [s["golden_score"] for s in scores] == sorted((s["golden_score"] for s in scores), reverse=True)
