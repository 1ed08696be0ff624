"""Whole-pool scores and lineage: ``pool.scores.parquet`` and ``dslrun why``."""

from __future__ import annotations

import pyarrow.parquet as pq

from testkit.cli import alpaca, dslrun, write_pool
from testkit.openai_server import OpenAITestServer

SPEC = """param pool = "p.json"
p = load(path: $pool)
d = dedup(p)
l = length(d)
f = filter(l, where: output_chars > 20)
cut = rank(f, by: output_chars, top: 5)
save(cut)
"""


def project(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    records = alpaca(30)
    records.append(dict(records[3]))  # row 30 repeats row 3: same sample id, another row
    write_pool(tmp_path / "p.json", records)
    (tmp_path / "s.sel").write_text(SPEC)
    dslrun("s.sel", "--out", "o", "-q", cwd=tmp_path, check=True)
    return {r["row"]: r for r in pq.read_table(tmp_path / "o" / "pool.scores.parquet").to_pylist()}


def test_every_loaded_row_with_its_scores_and_the_step_that_dropped_it(tmp_path):
    rows = project(tmp_path)
    assert sorted(rows) == list(range(31))  # every loaded row, the duplicate too
    kept = [r for r in rows.values() if r["kept"]]
    assert len(kept) == 5 and all(r["dropped_by"] is None and r["drop_reason"] is None for r in kept)
    cut_off = min(r["output_chars"] for r in kept)
    assert all(r["output_chars"] is not None for r in rows.values() if r["row"] != 30)  # scores of dropped rows
    assert rows[30]["dropped_by"] == "d" and rows[30]["output_chars"] is None  # never reached `length`
    assert "duplicate (normalized, on sample) of row 3" in rows[30]["drop_reason"]
    short = [r for r in rows.values() if r["row"] != 30 and r["output_chars"] <= 20]
    assert short and all(r["dropped_by"] == "f" and r["drop_reason"] == "`where: output_chars > 20` is false"
                         for r in short)
    ranked_out = [r for r in rows.values() if r["dropped_by"] == "cut"]
    assert len(ranked_out) == 31 - 1 - len(short) - 5
    assert all(r["drop_reason"] == f"output_chars = {r['output_chars']}, below the cut-off {cut_off} (top 5, 5 kept)"
               for r in ranked_out)


def test_why_prints_a_samples_path(tmp_path):
    rows = project(tmp_path)
    r = dslrun("why", "o", "30", cwd=tmp_path, check=True)
    assert f"sample {rows[30]['id']} (row 30 of `p`): dropped by `d`" in r.stdout
    assert "DROPPED: duplicate" in r.stdout and "(not reached)" in r.stdout
    kept = next(x for x in rows.values() if x["kept"])
    r = dslrun("why", "o", kept["id"], cwd=tmp_path, check=True)
    assert "KEPT" in r.stdout and f"output_chars = {kept['output_chars']}" in r.stdout
    missing = dslrun("why", "o", "nope", cwd=tmp_path)
    assert missing.returncode == 1 and "no sample with id or row `nope`" in missing.stderr


def test_a_failed_score_is_part_of_the_reason(tmp_path):
    records = [{"instruction": f"Explain idea number {i}.", "input": "", "output": f"Idea {i}."} for i in range(12)]
    write_pool(tmp_path / "pool.json", records)
    (tmp_path / "s.sel").write_text(
        'pool = load(path: "pool.json")\n'
        "rated = judge-score(pool, template: alpagasus, model: test-model, base_url: $url, api_key_env: K, "
        "timeout: 60, max_attempts: 1)\nkept = filter(rated, where: score >= 0)\nsave(kept)\n".replace(
            "$url", "\"{url}\""))
    with OpenAITestServer(reply=lambda req: "no score here") as srv:
        spec = (tmp_path / "s.sel").read_text().replace("{url}", srv.base_url)
        (tmp_path / "s.sel").write_text(spec)
        dslrun("s.sel", "--out", "o", "-q", cwd=tmp_path, env={"K": "x"}, check=True)
    rows = pq.read_table(tmp_path / "o" / "pool.scores.parquet").to_pylist()
    assert len(rows) == 12 and not any(r["kept"] for r in rows)
    assert all(r["dropped_by"] == "kept" and r["score"] == -1.0 for r in rows)
    assert all(r["drop_reason"].startswith("`where: score >= 0` is false; its score failed (score_reason: "
                                           "unparsable reply") for r in rows)


def test_rank_reasons_for_rows_its_where_excluded_and_for_missing_scores(tmp_path):
    """Each distinct score is formatted once (a pool of millions): the reasons stay per row."""
    import numpy as np

    from dslrun.dsl.parse import parse_expression as parse_expr
    from dslrun.operators.rank import Rank
    from dslrun.runtime.data.table import Table
    from dslrun.runtime.lineage.reasons import rank

    ids = np.array([f"s{i}" for i in range(6)], dtype=object)
    table = Table({"id": ids, "x": np.array([3.0, np.nan, 1.25, 3.0, 7.0, 1.25]), "ok": np.array([1, 1, 0, 1, 1, 1])})
    op = Rank(Rank.params_type(by=parse_expr("x"), top=1, where=parse_expr("ok == 1")))
    out = table.take([4])
    got = rank(op, [table], out, np.array([0, 1, 2, 3, 5]))
    tail = ", below the cut-off 7 (top 1, 1 kept)"
    assert list(got) == [f"x = 3{tail}", f"x = missing{tail}", "`where: ok == 1` is false", f"x = 3{tail}",
                         f"x = 1.25{tail}"]


def test_the_file_is_the_same_written_a_few_rows_at_a_time(tmp_path, monkeypatch):
    """A pool of millions is converted and written a row group at a time, and its rank reasons
    made a chunk of rows at a time: same content."""
    from dslrun.runtime.lineage import pool_scores, reasons

    whole = project(tmp_path / "a")
    table = pq.read_table(tmp_path / "a" / "o" / "pool.scores.parquet")
    monkeypatch.setattr(pool_scores, "ROW_GROUP", 7)
    monkeypatch.setattr(reasons, "CHUNK", 2)
    (tmp_path / "b").mkdir()
    records = alpaca(30)
    records.append(dict(records[3]))
    write_pool(tmp_path / "b" / "p.json", records)
    (tmp_path / "b" / "s.sel").write_text(SPEC)
    from dslrun.dsl.compile import compile_spec
    from dslrun.dsl.load import load_spec
    from dslrun.runtime.run import run_plan

    plan = compile_spec(load_spec(tmp_path / "b" / "s.sel"), {})
    assert run_plan(plan, {}, SPEC, tmp_path / "b" / "o", tmp_path / "b" / "c", quiet=True) == 0
    chunked = pq.ParquetFile(tmp_path / "b" / "o" / "pool.scores.parquet")
    assert chunked.metadata.num_row_groups == 5  # 31 rows, 7 at a time
    small = {r["row"]: r for r in chunked.read().to_pylist()}
    assert chunked.schema_arrow == table.schema and small == whole
