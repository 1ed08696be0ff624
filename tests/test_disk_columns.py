"""Large pools keep their text on disk (Arrow IPC files; JSONL records in the pool file): the
same tables and outputs, without holding the text."""

from __future__ import annotations

import gc
import io
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dslrun.core.settings import RunSettings
from dslrun.runtime.data import disk_columns
from dslrun.runtime.data.arrow_columns import ArrowColumn, ArrowStore
from dslrun.runtime.data.disk_columns import DiskColumn, SourceLines, spill_dir
from dslrun.runtime.data.lazy_column import LazyColumn
from dslrun.runtime.data.pool_files import _write_json_array, read_pool
from dslrun.runtime.data.pool_table import _pickled
from dslrun.runtime.data.table import Table, concat
from testkit.cli import SPECS, alpaca, dslrun, write_pool


def stored(values, codec="str"):
    store = ArrowStore(spill=True)
    for part in (values[:2], values[2:]):
        if codec == "str":
            store.extend("c", pa.array(part, pa.string()))
        else:
            store.extend("c", pa.array([_pickled(v) for v in part], pa.binary()), __import__("pickle").loads)
    store.finish()
    return store.column("c")


def lines(tmp_path, records):
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    ends = np.cumsum([0] + [len(json.dumps(r)) + 1 for r in records])
    return DiskColumn.of(SourceLines(path, ends[:-1], ends[1:]), "_record")


def test_a_disk_column_reads_back_what_was_written_through_takes_and_slices():
    values = ["", "a", "ünïcode ✓", "x" * 5000, "line\nbreak", "tab\tend"]
    col = stored(values)
    assert len(col) == 6 and col.values().tolist() == values
    picked = col.take(np.array([5, 1, 1, 3]))
    assert picked.values().tolist() == [values[5], values[1], values[1], values[3]]
    assert picked.take(np.array([2, 0])).values().tolist() == [values[1], values[5]]
    assert col.slice(2, 4).values().tolist() == values[2:4] and col.value(3) == values[3]
    assert [x for block in col.blocks(4) for x in block] == values
    assert stored(["", "", ""]).values().tolist() == ["", "", ""]  # an empty file cannot be mapped


@pytest.mark.parametrize("gap,span", [(0, 1), (3, 20), (64 * 1024, 8 * 2**20)])
def test_scattered_reads_return_values_in_the_asked_order_whatever_the_read_grouping(tmp_path, monkeypatch, gap, span):
    monkeypatch.setattr(disk_columns, "GAP", gap)
    monkeypatch.setattr(disk_columns, "SPAN", span)
    values = [{"v": f"value {i} " + "x" * (i % 13)} for i in range(200)]
    col = lines(tmp_path, values)
    idx = np.random.default_rng(0).integers(0, 200, 500)
    assert col.take(idx).values().tolist() == [values[i] for i in idx]


def test_objects_round_trip_and_the_files_go_with_the_last_table():
    records = [{"a": [1, {"b": None}]}, None, [1.5, "x"], {"k": "v"}]
    col = stored(records, "obj")
    assert col.values().tolist() == records
    folder = col.store.dir
    assert folder is not None and folder.exists()
    table = Table({"id": np.array(list("abcd"), dtype=object), "_record": col}).take([3, 0])
    del col
    gc.collect()
    assert folder.exists() and table.column("_record").tolist() == [records[3], records[0]]
    del table
    gc.collect()
    assert not folder.exists()


def test_table_operations_keep_disk_columns_on_disk():
    text = stored(["t0", "t1", "t2", "t3"])
    t = Table({"id": np.array(["a", "b", "c", "d"], dtype=object), "score": np.arange(4.0), "output": text})
    for part in (t.take([2, 0]), t.mask(np.array([1, 0, 1, 1], bool)), t.slice(1, 3),
                 concat([t.take([0]), t.take([3, 1])])):
        assert part.on_disk("output")
        assert part.column("output").tolist() == [f"t{int(i)}" for i in part.column("score")]
    assert t.select(["id", "output"]).on_disk("output")
    joined = concat([t.take([0]), t.take([3, 1])])
    assert joined.column("output").tolist() == ["t0", "t3", "t1"]
    assert t.value("output", 2) == "t2" and t.ndim("output") == 1 and t.dtype("output").kind == "O"
    assert [list(b) for b in t.blocks("output", 3)] == [["t0", "t1", "t2"], ["t3"]]
    assert t.rows(["id", "output"])[1] == {"id": "b", "output": "t1"}


def same_tables(a: Table, b: Table) -> None:
    assert a.all_columns == b.all_columns
    for c in a.all_columns:
        x, y = a.column(c), b.column(c)
        assert x.dtype == y.dtype, c
        assert x.tolist() == y.tolist() if x.dtype == object else np.array_equal(x, y, equal_nan=True), c


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_a_spilled_pool_is_the_same_table_as_one_in_memory(tmp_path, fmt):
    rows = alpaca(40)
    for i, r in enumerate(rows):
        if i >= 25:  # extra fields first seen late: earlier rows get None
            r["source"] = f"s{i}"
            r["votes"] = i
        if i % 7 == 0:
            r["flag"] = i % 2 == 0
    rows.insert(3, {"instruction": "bad", "output": ""})  # quarantined either way
    path = write_pool(tmp_path / f"p.{fmt}", rows, fmt)
    memory = read_pool(path)
    spilled = read_pool(path, spill_rows=0, spill_dir=tmp_path / "spill")
    same_tables(memory.table, spilled.table)
    t = spilled.table
    assert all(t.on_disk(c) for c in ("instruction", "input", "output", "messages", "_record", "source"))
    assert not any(t.on_disk(c) for c in ("id", "n_turns", "_row", "votes"))  # numbers stay in memory
    assert [q.row for q in spilled.quarantined] == [3]
    assert read_pool(path, spill_rows=1000).table.on_disk("output") is False  # under the threshold


def test_sharegpt_pool_spills_too(tmp_path):
    conv = [{"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}],
             "id": f"x{i}"} for i in range(10)]
    path = write_pool(tmp_path / "c.json", conv)
    same_tables(read_pool(path).table, read_pool(path, spill_rows=2).table)


@pytest.mark.parametrize("records", [[], [{}], [{"a": "x\ny", "b": [1, {"c": []}], "d": {}}], [1, "s", None],
                                     [{"k": "é\u2028"}, {"b": "q"}]])
def test_json_array_written_record_by_record_is_json_dump_bytes(records):
    streamed, dumped = io.StringIO(), io.StringIO()
    _write_json_array(streamed, records)
    json.dump(records, dumped, ensure_ascii=False, indent=2)
    assert streamed.getvalue() == dumped.getvalue() + "\n"


@pytest.mark.parametrize("spec", ["longest.sel", "random.sel"])
def test_recipes_write_identical_files_with_the_pool_on_disk(tmp_path, spec):
    args = [str(SPECS / spec), "--set", "k=100", "-q"]
    dslrun(*args, "--out", "mem", cwd=tmp_path, check=True)
    dslrun(*args, "--out", "disk", cwd=tmp_path, check=True, env={"DSLRUN_SPILL_ROWS": "0"})
    for name in ("selected.json", "selected.scores.parquet"):
        assert (tmp_path / "mem" / name).read_bytes() == (tmp_path / "disk" / name).read_bytes(), name


def _length_rank_save(tmp_path, fmt):
    from dslrun.dsl.compile import compile_spec
    from dslrun.dsl.load import load_spec
    from dslrun.runtime.run import run_plan

    write_pool(tmp_path / f"p.{fmt}", alpaca(600), fmt)
    spec = tmp_path / "s.sel"
    spec.write_text(f'p = load(path: "p.{fmt}")\nl = length(p)\ntop = rank(l, by: output_chars, top: 30)\nsave(top)\n')
    plan = compile_spec(load_spec(spec), {})
    settings = RunSettings(spill_rows=0, batch_rows=100)
    assert run_plan(plan, {}, spec.read_text(), tmp_path / "out", tmp_path / "cache", quiet=True,
                    settings=settings) == 0
    assert len(json.loads((tmp_path / "out" / "selected.json").read_text())) == 30 if fmt == "json" else \
        len((tmp_path / "out" / "selected.jsonl").read_text().splitlines()) == 30


def test_load_length_rank_save_never_reads_a_whole_text_column(tmp_path, monkeypatch):
    """Only the rows a step works on are read: the length step's batches, the selected records
    (a JSON array pool: read record by record, its text spilled to Arrow files)."""
    reads: list[int] = []
    real = ArrowStore.read

    def counting(self, name, positions):
        reads.append(len(positions))
        return real(self, name, positions)

    monkeypatch.setattr(ArrowStore, "read", counting)
    _length_rank_save(tmp_path, "json")
    assert reads and max(reads) <= 100  # the length batches; no step read all 600 rows of a column


def test_a_clean_jsonl_pool_spilled_to_arrow_files_is_read_a_batch_at_a_time(tmp_path, monkeypatch):
    """Through Arrow: length walks the spilled batches one at a time, save decodes only the 30
    selected lines of the source file."""
    from dslrun.runtime.data import arrow_jsonl
    from dslrun.runtime.data.arrow_columns import ArrowStore
    from dslrun.runtime.data.disk_columns import SourceLines

    monkeypatch.setattr(arrow_jsonl, "CHUNK_BYTES", 4096)  # about 40 rows a batch
    batches: list[int] = []
    lines: list[int] = []
    real_batch, real_lines = ArrowStore.batch, SourceLines.read

    def batch(self, name, b):
        arr = real_batch(self, name, b)
        batches.append(len(arr))
        return arr

    def read_lines(self, name, positions):
        lines.append(len(positions))
        return real_lines(self, name, positions)

    monkeypatch.setattr(ArrowStore, "batch", batch)
    monkeypatch.setattr(SourceLines, "read", read_lines)
    _length_rank_save(tmp_path, "jsonl")
    assert batches and max(batches) < 100 and sum(lines) == 30


def test_a_lazy_column_is_not_an_ndarray_so_it_cannot_leak_into_numpy_math():
    col = stored(["a"])
    assert isinstance(col, ArrowColumn) and isinstance(col, LazyColumn) and not isinstance(col, np.ndarray)


@pytest.mark.parametrize("kind,values", [
    ("int", [1, 2, None, True, 3]), ("int", [4, 5, 6, 7, 8]), ("float", [1.5, None, 2, float("nan"), 3]),
    ("bool", [True, False, None, 1, 0]), ("bool", [True, False, True, True, False]),
    ("str", ["a", None, "b", "c", "d"]), ("list", [[1], None, [2], [], [3]]),
    ("vector", [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [0, 0], [1, 1]])])
@pytest.mark.parametrize("rows", [[0, 1, 2, 3, 4], [0, 1, 3, 4], [4, 3, 3]])
def test_results_kept_in_numpy_buffers_give_the_columns_as_column_gives(kind, values, rows):
    from dslrun.runtime.data.table import as_column
    from dslrun.runtime.execution.sample_runner import _Slots

    slots = _Slots(kind, 5)
    slots.put(np.array([3, 4]), values[3:])  # batches arrive in any order
    slots.put(np.array([0, 1, 2]), values[:3])
    got, want = slots.column(np.array(rows)), as_column([values[r] for r in rows], kind)
    assert got.dtype == want.dtype
    assert got.tolist() == want.tolist() if got.dtype == object else np.array_equal(got, want, equal_nan=True)


def test_a_killed_runs_files_are_removed_by_the_next_store_on_this_host(tmp_path):
    code = ("import time\nfrom dslrun.runtime.data.disk_columns import spill_dir\n"
            f"d = spill_dir({str(tmp_path)!r})\n(d / 'c.arrow').write_text('x')\n"
            "print(d, flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    left = Path(proc.stdout.readline().strip())
    other_host = tmp_path / "dslrun-columns-elsewhere-1-abc"  # a shared tmp_dir: not ours to judge
    other_host.mkdir()
    alive = spill_dir(tmp_path)
    assert left.is_dir()  # its process still runs: its store stays
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    spill_dir(tmp_path)
    assert not left.exists() and other_host.exists() and alive.exists()


def test_a_pickled_table_carries_the_values_of_its_disk_columns():
    import pickle

    t = Table({"id": np.array(["a", "b", "c"], dtype=object), "output": stored(["x", "y", "z"])}).take([2, 0])
    copy = pickle.loads(pickle.dumps(t))  # what a Ray worker receives: it cannot read our temp files
    assert not copy.on_disk("output") and copy.column("output").tolist() == ["z", "x"]


def test_dslrun_yaml_moves_the_threshold_and_the_folder_and_a_run_leaves_nothing_there(tmp_path):
    write_pool(tmp_path / "p.json", alpaca(30))
    (tmp_path / "s.sel").write_text('p = load(path: "p.json")\nl = length(p)\ntop = rank(l, by: output_chars, top: 5)\n'
                                    'save(top)\n')
    (tmp_path / "dslrun.yaml").write_text("spill_rows: 0\ntmp_dir: scratch/columns\n")
    dslrun("s.sel", "-q", "--out", "disk", cwd=tmp_path, check=True)
    folder = tmp_path / "scratch" / "columns"
    assert folder.is_dir() and not any(folder.iterdir())  # used, and cleaned when the run ended
    (tmp_path / "dslrun.yaml").unlink()
    dslrun("s.sel", "-q", "--out", "memory", cwd=tmp_path, check=True)
    assert (tmp_path / "disk" / "selected.json").read_bytes() == (tmp_path / "memory" / "selected.json").read_bytes()
