"""Compact columns: sample ids as 8-byte digests, counts in the narrowest integer type.

Both read back exactly as the plain columns they replace (strings, int64), which is what
keeps every output byte-identical; the tests compare them value by value and type by type.
"""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import pyarrow as pa
import pytest

from dslrun.runtime.data.id_column import HexIds, compact_ids, equal_ids, rows_with_id
from dslrun.runtime.data.packed_ints import PackedInts
from dslrun.runtime.data.table import Table, concat


def ids(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [hashlib.sha256(str(rng.random()).encode()).hexdigest()[:16] for _ in range(n)]


def test_ids_read_back_as_the_strings_they_were():
    strs = ids(1000) + ["0000000000000000", "ffffffffffffffff", "00000000000000ff"]
    col = HexIds.of(strs)
    assert col is not None and col.digests.nbytes == 8 * len(strs)
    assert col.values().tolist() == strs and all(type(s) is str for s in col.values())
    assert [col.value(i) for i in (0, 1000, 1001, 1002, -1)] == [strs[0], *strs[1000:], strs[-1]]
    idx = np.array([5, 3, 1002, 5])
    assert col.take(idx).values().tolist() == [strs[i] for i in idx]
    assert col.slice(10, 20).values().tolist() == strs[10:20]
    assert col.read(np.array([2, 0])) == [strs[2], strs[0]]
    assert [x for b in col.blocks(7) for x in b] == strs


def test_ids_in_arrow_and_joined_as_the_strings_give():
    strs = ids(300, seed=1)
    col = HexIds.of(strs)
    assert col.arrow().equals(pa.array(strs, pa.string()))
    assert pa.concat_arrays(list(col.arrow_blocks(64))).equals(pa.array(strs, pa.string()))
    assert col.joined(b"\n") == "\n".join(strs).encode()
    assert col.joined(b"") == "".join(strs).encode()
    assert HexIds.of([]).joined(b"\n") == b"" and HexIds.of([]).arrow().equals(pa.array([], pa.string()))


def test_digest_order_is_text_order_and_equality_is_id_equality():
    strs = ids(500, seed=2)
    col = HexIds.of(strs)
    assert [strs[i] for i in np.argsort(col.digests, kind="stable")] == sorted(strs)
    other = np.array(strs, dtype=object)
    other[7] = "not-an-id"
    assert equal_ids(col, HexIds.of(strs)).all()
    assert equal_ids(col, other).tolist() == [i != 7 for i in range(500)]
    assert rows_with_id(col, strs[9]).tolist() == [9] and not len(rows_with_id(col, "nope"))
    assert rows_with_id(other, strs[9]).tolist() == [9]


@pytest.mark.parametrize("bad", ["ABCDEF0123456789", "abc", "0123456789abcdef0", None, 5])
def test_anything_but_a_sample_id_stays_as_it_is(bad):
    strs = np.array([*ids(3), bad], dtype=object)
    assert HexIds.of(strs) is None
    assert compact_ids(strs) is strs


def test_tables_concatenate_and_select_compact_ids():
    a, b = ids(5, 3), ids(4, 4)
    ta = Table({"id": HexIds.of(a), "x": np.arange(5)})
    tb = Table({"id": HexIds.of(b), "x": np.arange(4)})
    joined = concat([ta, tb])
    assert isinstance(joined.stored("id"), HexIds) and joined.ids.tolist() == a + b
    mixed = concat([ta, Table({"id": np.array(b, dtype=object), "x": np.arange(4)})])
    assert mixed.ids.tolist() == a + b
    assert ta.mask(np.array([1, 0, 1, 0, 1], bool)).ids.tolist() == a[::2]


@pytest.mark.parametrize("values,dtype", [([0, 5, 65535], np.uint16), ([0, 70000], np.uint32),
                                          ([-3, 100], np.int8), ([-3, 200], np.int16), ([-40000, 1], np.int32), ([0, 255], np.uint8)])
def test_counts_are_held_narrow_and_read_back_as_int64(values, dtype):
    arr = np.array(values, dtype=np.int64)
    col = PackedInts.of(arr)
    assert isinstance(col, PackedInts) and col.packed.dtype == dtype
    back = col.values()
    assert back.dtype == np.int64 and back.tolist() == values
    assert col.dtype == np.int64 and type(col.value(1)) is np.int64 and col.value(1) == values[1]
    assert col.take(np.array([1, 0])).values().tolist() == [values[1], values[0]]
    assert col.read(np.array([0])) == [values[0]] and type(col.read(np.array([0]))[0]) is int
    assert [x for b in col.blocks(1) for x in b.tolist()] == values


def test_what_needs_all_64_bits_or_is_not_int64_is_kept_as_is():
    for arr in (np.array([0, 2**40], np.int64), np.array([1.5]), np.zeros(0, np.int64)):
        assert PackedInts.of(arr) is arr


def test_a_table_of_packed_counts_looks_like_int64_to_every_reader():
    t = Table({"id": HexIds.of(ids(6, 5)), "n": PackedInts.of(np.array([4, 1, 9, 0, 2, 7]))})
    assert t.dtype("n") == np.int64 and t.column("n").dtype == np.int64
    assert t.take(np.array([2, 0])).column("n").tolist() == [9, 4]
    assert concat([t, t]).column("n").tolist() == [4, 1, 9, 0, 2, 7] * 2
    assert json.dumps(t.rows(["n"])) == json.dumps([{"n": v} for v in (4, 1, 9, 0, 2, 7)])


SPEC = """p = load(path: "p.jsonl")
l = length(p)
top = rank(l, by: output_words, top: 3)
save(top)
"""


def test_a_run_holds_ids_and_counts_compactly_and_its_lineage_copies_no_count(tmp_path):
    """Before: each id a Python string (~73 bytes a row), each count an int64, and the lineage
    copied every count column when the ranked subset passed its (same) values on."""
    from dslrun.dsl.compile import compile_spec
    from dslrun.dsl.load import load_spec
    from dslrun.runtime.lineage.pool_scores import build
    from dslrun.runtime.run import execute_run
    from testkit.cli import alpaca, write_pool

    write_pool(tmp_path / "p.jsonl", alpaca(12), "jsonl")
    (tmp_path / "s.sel").write_text(SPEC)
    plan = compile_spec(load_spec(tmp_path / "s.sel"), {})
    done = execute_run(plan, {}, SPEC, tmp_path / "o", tmp_path / "c", progress=False, handle_sigint=False)
    tables = done.result.tables
    assert isinstance(tables["p"].stored("id"), HexIds)
    assert isinstance(tables["l"].stored("output_words"), PackedInts)
    assert isinstance(tables["top"].stored("output_words"), PackedInts)
    scores = build(plan, tables)
    assert scores["output_words"].source is tables["l"].stored("output_words")  # adopted, not copied
    assert scores["kept"].sum() == 3
