"""Hostile pools (tests/fixtures/hostile_pools/): one bad record is quarantined with its row and
reason, the rest load; never a spec error for the whole pool, never a traceback.

Before: a bad byte inside a JSON array record failed the run (``UnicodeEncodeError`` writing the
quarantine file, rc 1); a record nested 100,000 deep in JSONL rejected the whole pool as a *spec*
error (``maximum recursion depth exceeded``); a BOM quarantined the first record of a JSONL file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dslrun.runtime.data import json_stream, memory_pools
from dslrun.runtime.data.pool_files import PoolError, read_pool, write_quarantine
from dslrun.runtime.data.record_checks import MAX_RECORD_DEPTH, record_problem
from testkit.cli import dslrun

POOLS = Path(__file__).parent / "fixtures" / "hostile_pools"
TOO_DEEP = f"nested deeper than {MAX_RECORD_DEPTH} levels"

# file → {row: reason} of the records it must quarantine (every other of its 5 loads)
CASES = {
    "bad_utf8.json": {2: "bad UTF-8 (undecodable bytes or lone surrogates in text)"},
    "deep.jsonl": {1: TOO_DEEP, 3: TOO_DEEP},
    "deep.json": {1: TOO_DEEP, 3: TOO_DEEP},
    "bom.jsonl": {},
    "bom.json": {},
    "bom_wrapped.json": {},
}


def run(tmp_path: Path, name: str):
    shutil.copy(POOLS / name, tmp_path / name)
    (tmp_path / "spec.sel").write_text(f'pool = load(path: "{name}")\nsave(pool)\n')
    return dslrun("run", "spec.sel", "-q", "--out", "o", cwd=tmp_path)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_bad_record_alone_is_quarantined_with_its_row_and_reason(tmp_path, name):
    proc = run(tmp_path, name)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr
    want = CASES[name]
    out = tmp_path / "o"
    selected = out / ("selected.jsonl" if name.endswith(".jsonl") else "selected.json")
    text = selected.read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines()] if name.endswith(".jsonl") else json.loads(text)
    assert len(rows) == 5 - len(want)
    assert rows[0]["instruction"] == "Do task 0"  # a BOM is skipped, not a bad first record
    qfile = out / "quarantine" / "pool.jsonl"
    if not want:
        assert not qfile.exists()
        return
    got = [json.loads(line) for line in qfile.read_text(encoding="utf-8").splitlines()]
    assert {q["row"]: q["reason"] for q in got} == want
    assert f"{len(want)} malformed rows quarantined" in proc.stdout


def test_a_bad_byte_stays_visible_in_the_quarantine_file(tmp_path):
    run(tmp_path, "bad_utf8.json")
    (q,) = [json.loads(line) for line in (tmp_path / "o" / "quarantine" / "pool.jsonl").read_text().splitlines()]
    assert q["record"]["output"] == "Answer \\xff 2"  # the byte, said in text a UTF-8 file can hold


def test_a_record_too_deep_is_kept_as_a_short_snippet(tmp_path):
    loaded = read_pool(POOLS / "deep.jsonl")
    assert [q.row for q in loaded.quarantined] == [1, 3]
    assert all(isinstance(q.record, str) and len(q.record) < 250 for q in loaded.quarantined)
    write_quarantine(tmp_path / "q.jsonl", loaded.quarantined)  # writes without recursing


@pytest.mark.parametrize("chunk", [7, 100, 4096])
def test_a_deep_array_element_is_skipped_at_any_buffer_size(monkeypatch, chunk):
    """The skipped element spans many buffers, and holds brackets inside a string."""
    monkeypatch.setattr(json_stream, "CHUNK", chunk)
    loaded = read_pool(POOLS / "deep.json")
    assert [q.row for q in loaded.quarantined] == [1, 3]
    assert list(loaded.table.column("instruction")) == ["Do task 0", "Do task 2", "Do task 4"]


def test_the_depth_limit_is_checked_without_recursion():
    deep: list = []
    for _ in range(100_000):  # far past the interpreter's recursion limit
        deep = [deep]
    assert record_problem({"instruction": "x", "input": deep, "output": "y"}) == TOO_DEEP
    ok: list = []
    for _ in range(MAX_RECORD_DEPTH - 2):  # the record is the first level, the innermost list the last
        ok = [ok]
    assert record_problem({"input": ok}) is None
    assert record_problem({"input": [ok]}) == TOO_DEEP


def test_records_in_memory_are_held_to_the_same_depth():
    deep: list = []
    for _ in range(MAX_RECORD_DEPTH + 1):
        deep = [deep]
    records = [{"instruction": "a", "output": "b"}, {"instruction": "c", "input": deep, "output": "d"}]
    name = memory_pools.register(memory_pools.as_memory_pool(records))
    try:
        loaded = read_pool(name)
    finally:
        memory_pools.unregister(name)
    assert [(q.row, q.reason) for q in loaded.quarantined] == [(1, TOO_DEEP)]


def test_a_whole_file_object_too_deep_is_a_pool_error_not_a_recursion_error(tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text('{"data": [{"instruction": "a", "input": ' + "[" * 5000 + "]" * 5000 + ', "output": "b"}]}')
    with pytest.raises(PoolError, match=TOO_DEEP):
        read_pool(path)
