"""``dslrun cache ls`` tells entries of one operator apart: template, model, params digest, rows, size."""

from __future__ import annotations

from dslrun.runtime.cache.sqlite import ScoreCache
from testkit.cli import dslrun


def test_cache_ls_shows_operator_template_model_params_rows_and_size(tmp_path):
    cache = ScoreCache(tmp_path / "c" / "scores.sqlite")
    cache.register("a" * 64, "judge-score", "2", {"template": "alpagasus", "temperature": 0}, "openai:gpt-4o-mini")
    cache.register("b" * 64, "judge-score", "2", {"template": "deita-quality", "temperature": 0}, "local:smollm2")
    cache.put_many("a" * 64, [(f"s{i}", {"score": 4.0}) for i in range(3)])
    cache.close()
    out = dslrun("cache", "ls", "--cache-dir", "c", cwd=tmp_path, check=True).stdout.splitlines()
    assert out[0] == "cache c: 2 nodes, 3 samples"
    assert out[1].split() == ["node", "operator", "template", "model", "params", "rows", "size"]
    rows = {line.split()[4]: line.split() for line in out[2:]}
    a, b = rows["openai:gpt-4o-mini"], rows["local:smollm2"]
    assert a[:4] == ["a" * 12, "judge-score", "v2", "alpagasus"] and a[6:8] == ["3", "0.00"]
    assert b[3] == "deita-quality" and b[6] == "0"
    assert a[5] != b[5] and len(a[5]) == 8  # the params digest tells them apart
