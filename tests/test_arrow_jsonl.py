"""A clean JSONL pool read through Arrow gives the table the per-record path gives, or falls back."""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from dslrun.core.keys import alpaca_sample_ids, sample_id
from dslrun.runtime.data import arrow_jsonl
from dslrun.runtime.data.arrow_jsonl import read_clean_jsonl
from dslrun.runtime.data.arrow_text import ONLY_SPACE, char_counts, word_counts
from dslrun.runtime.data.id_column import HexIds
from dslrun.runtime.data.pool_files import read_pool
from testkit.pool_tables import mixed_records, same_table

SHIPPED = Path(__file__).resolve().parents[1] / "specs" / "data" / "alpaca_random_1k.json"


def per_record(monkeypatch, path, **kw):
    with monkeypatch.context() as m:
        m.setattr(arrow_jsonl, "read_clean_jsonl", lambda *a, **k: None)
        return read_pool(path, **kw)


def write_jsonl(path, records, **dump):
    path.write_text("".join(json.dumps(r, **dump) + "\n" for r in records), encoding="utf-8")
    return path


def test_the_shipped_pool_as_jsonl_loads_the_same_through_arrow(tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "pool.jsonl", json.loads(SHIPPED.read_text()), ensure_ascii=False)
    assert read_clean_jsonl(path, 0, {}, None, None) is not None  # the fast path took it
    same_table(read_pool(path).table, per_record(monkeypatch, path).table)


def _records(rng, n):
    texts = ["plain", "  padded\u3000", "ünïcode ✓ 😀", "line\nbreak\u2028sep", "tab\there", "\x1cfs\x1f", "quote \" \\ /",
             "2020-01-01", "12", "a" * 300]
    return mixed_records(rng, n, texts)


@pytest.mark.parametrize("chunk,spill,limit", [(1 << 20, None, 0), (700, None, 0), (700, 40, 0), (700, 40, 57)])
def test_mixed_pools_load_the_same_in_any_chunking_spilled_or_not(tmp_path, monkeypatch, chunk, spill, limit):
    path = write_jsonl(tmp_path / "pool.jsonl", _records(random.Random(chunk + (spill or 0)), 120), ensure_ascii=False)
    monkeypatch.setattr(arrow_jsonl, "CHUNK_BYTES", chunk)
    assert read_clean_jsonl(path, limit, {}, spill, tmp_path / "spill") is not None
    fast = read_pool(path, limit=limit, spill_rows=spill, spill_dir=tmp_path / "spill").table
    slow = per_record(monkeypatch, path, limit=limit, spill_rows=spill, spill_dir=tmp_path / "spill").table
    same_table(fast, slow)
    picked = np.array([5, 0, 44, 5, len(fast) - 1])
    same_table(fast.take(picked), slow.take(picked))
    assert fast.arrow_blocks("output") is not None  # the per-record path's text is Arrow only once spilled
    assert (slow.arrow_blocks("output") is None) == (spill is None)


def test_renamed_fields_and_a_pool_without_input(tmp_path, monkeypatch):
    recs = [{"prompt": f"p{i}", "response": f"r{i}", "output": "an extra"} for i in range(30)]
    path = write_jsonl(tmp_path / "pool.jsonl", recs)
    fields = {"instruction": "prompt", "output": "response"}
    assert read_clean_jsonl(path, 0, fields, None, None) is not None
    same_table(read_pool(path, fields=fields).table, per_record(monkeypatch, path, fields=fields).table)


GOOD = '{"instruction": "q", "input": "", "output": "a"}'
FALLBACK = [
    "", "   ", '\ufeff' + GOOD, GOOD + " " + GOOD, '{"instruction": "q", "output": "\\ud800"}',
    '{"instruction": "q", "output": 3}', '{"instruction": "q", "output": "a", "meta": {"k": 1}}',
    '{"instruction": "q",\t"output": "a"}', '[1, 2]', '{"instruction": "q", "output": "a", "output": "b"}',
    '{"instruction": "q", "output": "a", "tags": ["x"]}', '{"instruction": "q", "output": "a"',
]
QUARANTINED = [  # rows Arrow reads but the per-record path quarantines: quarantined the same way
    '{"instruction": "q", "output": "  "}', '{"instruction": "q", "output": "\\u2028 "}',
    '{"instruction": " ", "output": "a"}', '{"instruction": "q", "input": null, "output": "a"}',
    '{"instruction": "q"}', '{"output": "a", "extra_only_here": 1}',
]
ACCEPTED = ['{"instruction": "q", "output": "a", "when": "2020-01-01"}', '{"instruction": "q", "output": "a", "big": NaN}',
            '{"output": "a", "instruction": "q3"}']


@pytest.mark.parametrize("line", FALLBACK + QUARANTINED + ACCEPTED)
def test_each_line_is_read_as_the_per_record_path_reads_it(tmp_path, monkeypatch, line):
    """A line the fast path cannot vouch for sends the file to the per-record path; a row it can
    tell is to be quarantined is quarantined with parse_record's reason; the others are kept."""
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join([GOOD, line, GOOD.replace('"q"', '"q2"')]) + "\n", encoding="utf-8")
    assert (read_clean_jsonl(path, 0, {}, None, None) is None) == (line in FALLBACK)
    loaded, slow = read_pool(path), per_record(monkeypatch, path)
    same_table(loaded.table, slow.table)
    assert [(q.row, q.reason, q.record) for q in loaded.quarantined] == \
        [(q.row, q.reason, q.record) for q in slow.quarantined]
    if line in QUARANTINED + ACCEPTED:
        assert bool(slow.quarantined) == (line in QUARANTINED)


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5, 0])
@pytest.mark.parametrize("chunk", [60, 1 << 20])
def test_quarantined_rows_and_limit_count_as_in_the_per_record_path(tmp_path, monkeypatch, limit, chunk):
    """``limit`` counts kept rows; a bad row after the last one kept is never read."""
    lines = [GOOD, QUARANTINED[0], GOOD.replace('"q"', '"q1"'), QUARANTINED[4], QUARANTINED[3],
             GOOD.replace('"q"', '"q2"'), QUARANTINED[1], GOOD.replace('"q"', '"q3"'), QUARANTINED[2]]
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setattr(arrow_jsonl, "CHUNK_BYTES", chunk)
    assert read_clean_jsonl(path, limit, {}, None, None) is not None
    loaded, slow = read_pool(path, limit=limit), per_record(monkeypatch, path, limit=limit)
    same_table(loaded.table, slow.table)
    assert [(q.row, q.reason) for q in loaded.quarantined] == [(q.row, q.reason) for q in slow.quarantined]
    assert [r["instruction"] for r in loaded.table.column("_record")] == \
        [r["instruction"] for r in slow.table.column("_record")]


def test_bad_utf8_and_carriage_returns_fall_back(tmp_path, monkeypatch):
    for raw in (GOOD.encode() + b"\n" + b'{"instruction": "q\xff", "output": "a"}\n',
                GOOD.encode() + b"\n" + b'{"instruction": "q", "output": "a", "k\xc3": 1}\n',
                GOOD.encode() + b"\n" + b'{"instruction": "q", "output": "a", "k": "\xed\xa0\x80"}\n',
                GOOD.encode() + b"\r\n" + GOOD.encode() + b"\r\n"):
        path = tmp_path / "pool.jsonl"
        path.write_bytes(raw)
        assert read_clean_jsonl(path, 0, {}, None, None) is None
        same_table(read_pool(path).table, per_record(monkeypatch, path).table)


def test_the_whitespace_class_is_pythons_for_every_code_point():
    chars = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    arr = pa.array(chars)
    only_space = pc.match_substring_regex(arr, ONLY_SPACE).to_pylist()
    assert [c for c, s in zip(chars, only_space) if s != c.isspace()] == []
    texts = [f"a{c}b" for c in chars]
    words = word_counts(pa.array(texts)).tolist()
    assert [c for c, t, w in zip(chars, texts, words) if w != len(t.split())] == []
    assert char_counts(pa.array(texts)).tolist() == [len(t) for t in texts]


def test_alpaca_ids_are_sample_ids():
    rows = [("Do it\r\n", " x ", "done"), ("é\u0301", "", "ok\u3000"), ('q"\\', "\x00", "a\n")]
    got = alpaca_sample_ids(*map(list, zip(*rows)))
    assert got.tolist() == [sample_id([], r) for r in rows]


def test_a_pool_file_changed_during_the_run_is_an_error_not_other_records(tmp_path):
    path = write_jsonl(tmp_path / "pool.jsonl", [{"instruction": f"q{i}", "output": "a"} for i in range(5)])
    table = read_pool(path).table
    assert table.value("_record", 2) == {"instruction": "q2", "output": "a"}
    path.write_text(path.read_text().replace("q2", "Q2"))
    with pytest.raises(RuntimeError, match=re.escape("changed during the run")):
        table.column("_record")


@pytest.mark.parametrize("seed", range(4))
def test_ids_built_in_arrow_are_sample_ids(seed):
    """ASCII rows get their id from Arrow-built JSON; the rest from sample_id's own code."""
    from dslrun.runtime.data.arrow_ids import alpaca_ids

    rng = random.Random(seed)
    alphabet = [chr(c) for c in range(0x80)] + ["é", "e\u0301", "\u3000", "😀", "\u2028", "\x85"]
    ascii_only = [chr(c) for c in range(0x80)]

    def text():
        chars = alphabet if rng.random() < 0.3 else ascii_only
        return "".join(rng.choice(chars) for _ in range(rng.randint(0, 12))) + rng.choice(["", " ", "\r\n", "\t"])

    rows = [(text(), text(), text()) for _ in range(400)] + [("", "", ""), ("\r\n", " \x1c", '"\\')]
    got = HexIds(alpaca_ids(*(pa.array(list(col)) for col in zip(*rows))))
    assert got.values().tolist() == [sample_id([], r) for r in rows]
    sliced = HexIds(alpaca_ids(*(pa.array(list(col)).slice(7, 50) for col in zip(*rows)))).values()
    assert sliced.tolist() == [sample_id([], r) for r in rows[7:57]]


def test_an_integer_past_int64_is_read_as_json_loads_reads_it(tmp_path, monkeypatch):
    """Arrow reads 10**20 as a float; json.loads as an int. Before, the fast path gave
    [1.0, 1e+20] and the per-record path failed (OverflowError in as_column)."""
    path = write_jsonl(tmp_path / "pool.jsonl", [{"instruction": "q", "output": "a", "n": 1},
                                                 {"instruction": "r", "output": "b", "n": 10**20, "m": 0.5}])
    assert read_clean_jsonl(path, 0, {}, None, None) is None
    table = read_pool(path).table
    assert table.column("n").tolist() == [1, 10**20] and table.column("m").tolist()[1] == 0.5
    same_table(table, per_record(monkeypatch, path).table)
    small = write_jsonl(tmp_path / "small.jsonl", [{"instruction": "q", "output": "a", "n": 10**17, "m": 0.5}])
    assert read_clean_jsonl(small, 0, {}, None, None) is not None  # 18 digits: Arrow reads them


def test_a_run_saves_an_integer_past_int64(tmp_path):
    """save wrote selected.scores.parquet with pa.array, which raised OverflowError: the step failed."""
    import pyarrow.parquet as pq

    from testkit.cli import dslrun

    write_jsonl(tmp_path / "pool.jsonl", [{"instruction": "q", "output": "a", "n": 1},
                                          {"instruction": "r", "output": "b", "n": 10**20}])
    (tmp_path / "s.sel").write_text('p = load(path: "pool.jsonl")\nsave(p)\n')
    dslrun("s.sel", "--out", "o", "-q", cwd=tmp_path, check=True)
    assert [json.loads(x)["n"] for x in (tmp_path / "o" / "selected.jsonl").read_text().splitlines()] == [1, 10**20]
    assert pq.read_table(tmp_path / "o" / "selected.scores.parquet").column("n").to_pylist() == ["1", str(10**20)]
    assert pq.read_table(tmp_path / "o" / "pool.scores.parquet").column("n").to_pylist() == ["1", str(10**20)]
