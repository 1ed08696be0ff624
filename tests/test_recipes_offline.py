"""Recipes end to end with the real offline model (SmolLM2-135M-Instruct GGUF). Slow: marked."""

from __future__ import annotations

import json

import pytest

from testkit.cli import SPECS, dslrun

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.slow




@pytest.mark.parametrize("recipe, kept", [("superfiltering", 2), ("ifd", 1)])
def test_ifd_recipes_on_20_real_samples(recipe, kept, model_cache, tmp_path):
    env = {"DSLRUN_MODEL_CACHE": str(model_cache)}
    r = dslrun(str(SPECS / f"{recipe}.sel"), "--set", "limit=20", "-q", "--out", "o", cwd=tmp_path, env=env,
               check=True)
    assert "model smollm2-135m resolved from" in r.stderr  # the source used is logged
    selected = json.loads((tmp_path / "o" / "selected.json").read_text())
    import pyarrow.parquet as pq

    scores = pq.read_table(tmp_path / "o" / "selected.scores.parquet").to_pylist()
    assert len(selected) == len(scores) <= kept
    assert all(s["ifd_reason"] is None and s["ifd"] > 0 for s in scores)
    again = dslrun(str(SPECS / f"{recipe}.sel"), "--set", "limit=20", "-q", "--out", "o", cwd=tmp_path, env=env,
                   check=True)
    row = next(line.split() for line in again.stdout.splitlines() if line.startswith("scored "))
    assert row[4:6] == ["20", "0"]
