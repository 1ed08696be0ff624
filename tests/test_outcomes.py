"""Honest outcomes: a step that keeps nothing says so, and an empty selection is still a typed dataset."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dslrun.core.context import NodeStats
from dslrun.runtime.execution.outcomes import kept_warning
from testkit.cli import alpaca, dslrun, write_pool

SPEC = """param pool = "p.json"
param rate = 0.05
p = load(path: $pool)
l = length(p)
cut = rank(l, by: output_chars, fraction: $rate)
save(cut, path: "{out}")
"""


def run(tmp_path, out="selected.json", *sets):
    (tmp_path / "s.sel").write_text(SPEC.format(out=out))
    return dslrun("s.sel", "--out", "o", "-q", *sets, cwd=tmp_path, check=True)


@pytest.mark.parametrize("rows_in, rows_out, share, expected", [
    (19, 0, 0.01, "kept 0 of 19 rows"),
    (1000, 5, 0.01, "kept 5 of 1000 rows (0.5%), fewer than 1% (--warn-kept-below)"),
    (1000, 10, 0.01, None),
    (100, 100, 0.5, None),
    (0, 0, 0.01, None),  # nothing given, nothing to say
])
def test_kept_warning(rows_in, rows_out, share, expected):
    assert kept_warning(NodeStats(rows_in=rows_in, rows_out=rows_out), True, share) == expected
    assert kept_warning(NodeStats(rows_in=rows_in, rows_out=rows_out), False, share) is None  # `load`


def test_a_fraction_that_rounds_to_zero_warns_on_stderr_and_in_the_report(tmp_path):
    write_pool(tmp_path / "p.json", alpaca(19))
    r = run(tmp_path)
    assert "warning: cut: `fraction: 0.05` of 19 rows is 0.95, which rounds down to 0 rows" in r.stderr
    assert "warning: cut: kept 0 of 19 rows" in r.stderr
    html = (tmp_path / "o" / "report.html").read_text()
    assert '<section id="warnings"' in html and "kept 0 of 19 rows" in html
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    cut = next(n for n in report["nodes"] if n["name"] == "cut")
    assert "kept 0 of 19 rows" in cut["warnings"]
    assert json.loads((tmp_path / "o" / "selected.json").read_text()) == []


def test_a_share_below_the_threshold_warns_and_the_threshold_is_a_flag(tmp_path):
    write_pool(tmp_path / "p.json", alpaca(100))
    r = run(tmp_path, "selected.json", "--set", "rate=0.05", "--warn-kept-below", "0.1")
    assert "warning: cut: kept 5 of 100 rows (5%), fewer than 10% (--warn-kept-below)" in r.stderr
    quiet = run(tmp_path, "selected.json", "--set", "rate=0.05")
    assert "warning" not in quiet.stderr  # 5 % is above the default 1 %


def test_the_empty_scores_parquet_is_typed(tmp_path):
    write_pool(tmp_path / "p.json", alpaca(19))
    run(tmp_path)
    path = tmp_path / "o" / "selected.scores.parquet"
    schema = pq.read_schema(path)
    assert schema.field("id").type == pa.string() and schema.field("row").type == pa.int64()
    assert schema.field("output_chars").type == pa.int64()
    assert pq.ParquetFile(path).metadata.num_row_groups == 0


def test_an_empty_parquet_selection_is_typed(tmp_path):
    write_pool(tmp_path / "p.json", alpaca(19))
    run(tmp_path, "selected.parquet")
    schema = pq.read_schema(tmp_path / "o" / "selected.parquet")
    assert [(f.name, f.type) for f in schema] == [(c, pa.string()) for c in ("instruction", "input", "output")]


def test_datasets_loads_the_empty_outputs(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    write_pool(tmp_path / "p.json", alpaca(19))
    run(tmp_path, "selected.parquet")
    cache = str(tmp_path / "hf")
    for name, columns in [("selected.parquet", {"instruction", "input", "output"}),
                          ("selected.scores.parquet", {"id", "row", "output_chars", "total_words"})]:
        # datasets refuses to build any split with no rows; streaming reads the typed schema and no rows
        ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "o" / name), split="train",
                                   streaming=True, cache_dir=cache)
        assert set(ds.features) >= columns and list(ds) == []
        assert ds.features["id" if "id" in columns else "output"].dtype == "string"
