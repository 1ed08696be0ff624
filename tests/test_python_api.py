"""``import dslrun``: the Python API is the CLI's engine with Python values in and Arrow out."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dslrun as api
from dslrun.runtime.data import memory_pools
from testkit.cli import REPO, SPECS, alpaca, dslrun, write_pool

LONGEST = SPECS / "longest.sel"


def records(n: int = 60) -> list[dict]:
    recs = alpaca(n)
    recs[5]["source"] = "mixed"  # a field only some records have is kept, null elsewhere
    return recs


@pytest.fixture
def cli_run(tmp_path):
    """The CLI's output for the same pool, as JSONL: the API must give the same rows and scores."""
    pool = write_pool(tmp_path / "pool.jsonl", records(), "jsonl")
    dslrun("run", str(LONGEST), "--set", f"pool={pool}", "--set", "k=7", "--out", str(tmp_path / "cli"),
           "--cache-dir", str(tmp_path / "cache"), "-q", cwd=tmp_path, check=True)
    selected = [json.loads(line) for line in (tmp_path / "cli" / "selected.jsonl").read_text().splitlines()]
    return selected, pq.read_table(tmp_path / "cli" / "selected.scores.parquet")


def test_list_of_dicts_gives_the_cli_run_rows_and_scores(tmp_path, cli_run):
    selected, scores = cli_run
    res = api.run(LONGEST, set={"k": 7}, pool=records(), out=tmp_path / "api", cache_dir=tmp_path / "cache")
    assert isinstance(res.selected, pa.Table) and isinstance(res.scores, pa.Table)
    assert [{k: v for k, v in r.items() if v is not None} for r in res.selected.to_pylist()] == selected
    assert res.scores.equals(scores)
    assert res.stats["longest"].rows_out == 7
    assert (tmp_path / "api" / "selected.jsonl").read_text().splitlines() == [json.dumps(r) for r in selected]
    assert res.lock["inputs"][0]["path"].startswith("memory://list/")
    assert res.to_pandas()["output"].tolist() == [r["output"] for r in selected]


def test_pandas_and_arrow_pools_select_the_same_samples(tmp_path, cli_run):
    import pandas as pd

    _, scores = cli_run
    recs = records()
    frame = pd.DataFrame(recs)
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    for pool in (frame, arrow):
        res = api.run(LONGEST, set={"k": 7}, pool=pool, out=tmp_path / type(pool).__name__,
                      cache_dir=tmp_path / "cache")
        assert res.scores.column("id").equals(scores.column("id"))
        assert res.selected.schema.equals(arrow.schema)  # the pool's own Arrow schema
        assert res.selected.equals(arrow.take(res.scores.column("row")))
        assert (res.out / "selected.parquet").exists()  # a table pool is saved as Parquet


def test_a_datasets_pool_and_to_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(alpaca(30)).select(range(10, 30))  # an indices mapping, applied
    res = api.run(LONGEST, set={"k": 5}, pool=ds, cache_dir=tmp_path / "cache")
    assert res.stats["pool"].rows_out == 20
    back = res.to_dataset()
    assert isinstance(back, datasets.Dataset) and back.num_rows == 5
    assert set(back["instruction"]) <= {f"Task {i}" for i in range(10, 30)}
    with pytest.raises(TypeError, match="pass one split"):
        api.run(LONGEST, pool=datasets.DatasetDict({"train": ds}))


def test_malformed_records_in_memory_are_quarantined(tmp_path):
    recs = alpaca(10) + [{"instruction": "no answer"}]
    res = api.run(LONGEST, set={"k": 3}, pool=recs, out=tmp_path / "o", cache_dir=tmp_path / "cache")
    assert res.stats["pool"].quarantined == 1 and res.stats["pool"].rows_out == 10
    (line,) = (tmp_path / "o" / "quarantine" / "pool.jsonl").read_text().splitlines()
    assert json.loads(line)["reason"] == "missing field `output`"


def test_out_none_is_a_temporary_folder_removed_with_the_result(tmp_path):
    res = api.run(LONGEST, set={"k": 3}, pool=alpaca(10), cache_dir=tmp_path / "cache")
    folder = res.out
    assert (folder / "dslrun.lock.json").exists() and (folder / "report.html").exists()
    del res
    gc.collect()
    assert not folder.exists()


def test_the_in_memory_pool_lives_as_long_as_its_plan(tmp_path):
    plan = api.compile(LONGEST, pool=alpaca(5))
    (name,) = [k for k in memory_pools._POOLS if k.startswith("memory://list/")]
    assert memory_pools.lookup(name)
    del plan
    gc.collect()
    assert name not in memory_pools._POOLS


def test_check_returns_errors_as_objects_with_spans():
    text = 'param pool = "specs/data/alpaca_random_1k.json"\np = load(path: $pool)\nr = rank(p, by: outptu_chars)\n'
    errs = api.check(text)
    assert errs and all(isinstance(e, api.SpecError) for e in errs)
    (e,) = errs
    assert (e.span.file, e.span.line) == ("<spec>", 3)
    assert "outptu_chars" in e.message
    assert "output" in (e.hint or "") or "output" in e.message
    assert "r = rank(p, by: outptu_chars)" in str(e)  # rendered like `dslrun check`: the line and a caret
    assert api.check(LONGEST) == []
    assert api.check(str(SPECS / "longest.yaml"), set={"k": 5}) == []
    (bad,) = api.check(LONGEST, set={"kk": 5})
    assert "no parameter `kk`" in bad.message and bad.hint == "did you mean `k`?"


def test_check_reads_yaml_text_and_reports_a_missing_pool_parameter():
    yaml_text = "steps:\n  - name: p\n    op: load\n    path: specs/data/alpaca_random_1k.json\n  - op: save\n    input: p\n"
    assert api.check(yaml_text) == []
    (e,) = api.check(yaml_text, pool=alpaca(3))
    assert e.message == "pool=: the spec has no parameter `pool`"


def test_compile_gives_a_plan_with_explain_and_graph():
    plan = api.compile(SPECS / "ifd.sel", set={"limit": 200})
    assert plan.steps == ["pool", "scored", "cherry", "save_4"]
    assert "LLM" in plan.explain()
    assert plan.graph().startswith("flowchart TD") and "scored" in plan.graph()
    assert plan.graph("dot").startswith("digraph dslrun")
    with pytest.raises(api.ErrorList) as info:
        api.compile(SPECS / "ifd.sel", set={"limit": "many"})
    assert "expected int" in info.value.errors[0].message


def test_import_dslrun_is_light():
    code = ("import sys, dslrun\n"
            "heavy = [m for m in sys.modules if m.startswith(('torch', 'transformers', 'dslrun.dsl', 'pandas'))]\n"
            "assert not heavy, heavy\n"
            "dslrun.check('specs/longest.sel')\n"
            "assert 'torch' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_settings_are_taken_as_the_cli_takes_its_flags(tmp_path):
    res = api.run(LONGEST, set={"k": 3}, pool=alpaca(10), settings={"workers": 1, "batch_rows": 4},
                  cache_dir=tmp_path / "cache")
    assert res.stats["lengths"].rows_out == 10 and res.stats["longest"].rows_out == 3
    with pytest.raises(api.ErrorList, match="unknown setting `wrokers`") as info:
        api.run(LONGEST, pool=alpaca(3), settings={"wrokers": 2})
    assert info.value.errors[0].hint == "did you mean `workers`?"


def test_the_api_reads_the_scores_the_cli_cached(tmp_path):
    import testkit.slow_ops  # noqa: F401  (registers slow-score in this process, as --plugin does for the CLI)

    pool = write_pool(tmp_path / "pool.jsonl", records(), "jsonl")
    spec = tmp_path / "s.sel"
    spec.write_text(f'p = load(path: "{pool}")\ns = slow-score(p, delay: 0)\nsave(s)\n')
    dslrun("run", str(spec), "-q", "--out", str(tmp_path / "cli"), "--cache-dir", str(tmp_path / "cache"),
           cwd=tmp_path, env={"DSLRUN_PLUGINS": "testkit.slow_ops", "PYTHONPATH": str(REPO / "tests")}, check=True)
    res = api.run(spec, out=None, cache_dir=tmp_path / "cache")
    assert res.stats["s"].cache_hits == 60 and res.stats["s"].computed == 0  # one cache, one engine
