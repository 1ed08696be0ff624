"""A clean Alpaca pool that is one JSON array, read through Arrow, gives the table the per-record
path gives (every column, ids, row numbers, records, meta, quarantine), or falls back."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from dslrun.runtime.data import arrow_json_array, arrow_jsonl
from dslrun.runtime.data.arrow_json_array import read_clean_json_array
from dslrun.runtime.data.arrow_jsonl import NotClean
from dslrun.runtime.data.pool_files import PoolError, read_pool
from testkit.cli import POOL, SHARED
from testkit.pool_tables import mixed_records, same_quarantine, same_table

RANDOM_9K = SHARED / "data" / "alpagasus" / "random_9k.json"


def per_record(monkeypatch, path, **kw):
    with monkeypatch.context() as m:
        m.setattr(arrow_json_array, "read_clean_json_array", lambda *a, **k: None)
        return read_pool(path, **kw)


def fast(monkeypatch, path, **kw):
    """``read_pool`` through the Arrow reader: fails unless read_pool returned its table."""
    got = []

    def spy(*a, **k):
        got.append(read_clean_json_array(*a, **k))
        return got[-1]

    with monkeypatch.context() as m:
        m.setattr(arrow_json_array, "read_clean_json_array", spy)
        loaded = read_pool(path, **kw)
    assert len(got) == 1 and got[0] is not None, "the fast path did not read the pool"
    assert loaded.table is got[0][0]
    return loaded


def both_ways(monkeypatch, path, **kw):
    """The fast and the per-record reading, compared table by table and quarantine by quarantine."""
    loaded, slow = fast(monkeypatch, path, **kw), per_record(monkeypatch, path, **kw)
    same_table(loaded.table, slow.table)
    same_quarantine(loaded, slow)
    if len(loaded.table):
        picked = np.array([len(loaded.table) - 1, 0, len(loaded.table) // 2, 0])
        same_table(loaded.table.take(picked), slow.table.take(picked))
    return loaded, slow


def spans(table):
    col = table._cols["_record"]
    return col.store.starts, col.store.ends


@pytest.mark.parametrize("path", [POOL, RANDOM_9K], ids=["shipped", "random_9k"])
@pytest.mark.parametrize("chunk,spill,limit", [(32 << 20, None, 0), (1 << 16, None, 0), (5000, 700, 0),
                                               (1 << 16, 300, 901)])
def test_real_pools_load_the_same_through_arrow(tmp_path, monkeypatch, path, chunk, spill, limit):
    if not path.exists():
        pytest.skip(f"{path} is not present")
    monkeypatch.setattr(arrow_jsonl, "CHUNK_BYTES", chunk)
    loaded, slow = both_ways(monkeypatch, path, limit=limit, spill_rows=spill, spill_dir=tmp_path / "spill")
    assert loaded.table.meta["format"] == "json"
    raw = path.read_bytes()
    starts, ends = spans(loaded.table)
    assert all(raw[s:s + 1] == b"{" and raw[e - 1:e] == b"}" for s, e in zip(starts.tolist(), ends.tolist()))


TEXTS = ["plain", "  padded\u3000", "ünïcode ✓ 😀", "line\nbreak\u2028sep", "tab\there", "\x1cfs\x1f\x00", "quote \" \\ /",
         "ends in a backslash \\", "\\\\", '\\"', '"', "{[,]}: not structure", "NaN Infinity null true", "2020-01-01",
         "12345678901234567890123", "12", "a" * 300, ""]


def _records(rng, n):
    return mixed_records(rng, n, TEXTS, (1, 2.5, None, 7, -0.0, 1e-7, 123456789012345678), bad_rows=True)


def _layout(records, rng, layout):
    if layout == "one per line":
        return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n"
    if layout == "crlf":
        return json.dumps(records, indent=2).replace("\n", "\r\n") + "\r\n"
    if layout == "ragged":  # any whitespace, anywhere it may stand
        space = [" ", "\n", "\t", "\r\n", "", "  \n  "]
        parts = [json.dumps(r, ensure_ascii=rng.random() < 0.5, separators=(rng.choice([",", ", ", " ,\n"]), ":"))
                 for r in records]
        return rng.choice(space) + "[" + "".join(rng.choice(space) + p + rng.choice(space) + ","
                                                 for p in parts[:-1]) + parts[-1] + "]" + rng.choice(space)
    kw = {"pretty": {"indent": 4}, "tabs": {"indent": "\t"}, "compact": {"separators": (",", ":")},
          "one line": {}, "ascii": {"indent": 1, "ensure_ascii": True}}[layout]
    return json.dumps(records, **{"ensure_ascii": False, **kw})


LAYOUTS = ["pretty", "tabs", "compact", "one line", "one per line", "ascii", "crlf", "ragged"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("chunk,spill,limit", [(1 << 20, None, 0), (700, None, 0), (97, 40, 0), (700, 40, 57)])
def test_mixed_pools_load_the_same_in_any_layout_and_chunking(tmp_path, monkeypatch, layout, chunk, spill, limit):
    rng = random.Random(f"{layout}{chunk}{spill}{limit}")
    path = tmp_path / "pool.json"
    path.write_text(_layout(_records(rng, 150), rng, layout), encoding="utf-8")
    monkeypatch.setattr(arrow_jsonl, "CHUNK_BYTES", chunk)
    loaded, slow = both_ways(monkeypatch, path, limit=limit, spill_rows=spill, spill_dir=tmp_path / "spill")
    assert loaded.quarantined  # the pool has rows to quarantine
    assert loaded.table.arrow_blocks("output") is not None


def test_each_record_is_its_elements_bytes(tmp_path, monkeypatch):
    """``_record`` reads back each element's own text, so ``save`` writes what the pool holds."""
    records = [{"instruction": f"q{i} \\\" ,]", "output": "a", "n": i} for i in range(40)]
    text = json.dumps(records).encode()
    path = tmp_path / "pool.json"
    path.write_bytes(text)
    table = fast(monkeypatch, path).table
    starts, ends = spans(table)
    assert b", ".join(text[s:e] for s, e in zip(starts.tolist(), ends.tolist())) == text[1:-1]
    assert table.column("_record").tolist() == records


GOOD = '{"instruction": "q", "input": "", "output": "a"}'
FILES = [  # whole files that fall back
    "\ufeff[" + GOOD + "]", "[]", " [ ]\n", "[" + GOOD + "] x", "[" + GOOD + "]]", "[" + GOOD + "] []", "[" + GOOD,
    "[" + GOOD + ",]", "[" + GOOD + " " + GOOD + "]", "[" + GOOD + ",," + GOOD + "]", "[" + GOOD + "\\]",
    '{"data": [' + GOOD + "]}", "1", "", "[" + GOOD + "] 5", "[" + GOOD + '] "x"', "[" + GOOD + "] null",
    "[" + GOOD + ' "x", ' + GOOD + "]", "[" + GOOD + ", 5 " + GOOD + "]", "[5 " + GOOD + "]", "[" + GOOD + " true]",
]
FALLBACK = FILES + [  # an element between two good ones
    "1", '"s"', "null", "[1]", "[]", "{}, 2",
    '{"instruction": "q", "output": "a", "meta": {"k": 1}}', '{"instruction": "q", "output": "a", "tags": ["x"]}',
    '{"instruction": "q", "output": "a\tb"}', '{"instruction": "q", "output": "a\nb"}',
    '{"instruction": "q", "output": "a\x01b"}', '{"instruction": "q", "output": "a\x00b"}',
    '{"instruction": "q", "output": "a", "x": NaN}', '{"instruction": "q", "output": "a", "x": Infinity}',
    '{"instruction": "q", "output": "a", "x": -Infinity}', '{"instruction": "q", "output": "a", "output": "b"}',
    '{"instruction": "q", "output": 3}', '{"instruction": "q", "output": "a", "input": 1}',
    '{"instruction": "q", "output": "a", "input": [""]}',
    '{"instruction": "q", "output": "a", "category": 1}',  # text in the row before
    '{"instruction": "q", "output": "a", "x": 100000000000000000000}', '{"instruction": "q", "output": "\\ud800"}',
    '{"instruction": "q", "output": "a", "x": tru}', '{"instruction": "q", "output": "a",}',
    '{"instruction": "q", "output": "a" /* c */}', "{'instruction': 'q', 'output': 'a'}",
    '{"instruction": "q", "output": "a", "x": 01}', '{"instruction": "q", "output": "a", "x": 1.}',
    '{"instruction": "q", "output": "' + "\\\\" * 33 + '"}',  # a long run of backslashes before a quote
]
QUARANTINED = [
    '{"instruction": "q", "output": "  "}', '{"instruction": "q", "output": "\\u2028 "}',
    '{"instruction": " ", "output": "a"}', '{"instruction": "q", "input": null, "output": "a"}',
    '{"instruction": "q"}', '{"output": "a", "extra_only_here": 1}', "{}", '{"instruction": null, "output": "a"}',
]
ACCEPTED = [
    '{"instruction": "q", "output": "a", "when": "2020-01-01"}', '{"output": "a", "instruction": "q3"}',
    '{"instruction": "q", "output": "a\\u0000\\t\\"\\\\"}', '{"instr\\u0075ction": "q4", "output": "a"}',
    '{"instruction": "q", "output": "a", "x": 1e-400, "y": -0, "z": 123456789012345678}',
    '{\r\n\t"instruction" :"q5" ,"output":\n"a"\n}', '{"instruction": "q", "output": "😀 \\ud83d\\ude00"}',
    '{"instruction": "q", "output": "a", "category": "c"}', '{"instruction": "q", "output": "a", "": "empty key"}',
    '{"instruction": "q", "output": "' + "\\\\" * 31 + '\\"' + "\\\\" * 31 + '"}',
]
EITHER = ['{"instruction": "q", "output": "a", "messages": "m"}', '{"instruction": "q", "output": "a", "_row": 1}']


def _outcome(read, *args, **kw):
    try:
        loaded = read(*args, **kw)
    except (PoolError, ValueError, OverflowError) as e:
        return type(e).__name__, str(e)
    return loaded


@pytest.mark.parametrize("case", range(len(FALLBACK + QUARANTINED + ACCEPTED + EITHER)))
def test_each_element_is_read_as_the_per_record_path_reads_it(tmp_path, monkeypatch, case):
    """An element or file the fast path cannot vouch for sends the file to the per-record path
    (whose error, if it has one, stands); a row it can tell is to be quarantined is quarantined
    with parse_record's reason; the others are kept."""
    text = (FALLBACK + QUARANTINED + ACCEPTED + EITHER)[case]
    whole = case < len(FILES)
    path = tmp_path / "pool.json"
    body = text if whole else ("[\n  " + ",\n  ".join([GOOD.replace('"input"', '"category": "c", "input"'), text,
                                                       GOOD.replace('"q"', '"q2"')]) + "\n]\n")
    path.write_text(body, encoding="utf-8")
    clean = read_clean_json_array(path, 0, {}, None, None)
    if text in FALLBACK:
        assert clean is None
    elif text not in EITHER:
        assert clean is not None
    got, slow = _outcome(read_pool, path), _outcome(per_record, monkeypatch, path)
    if isinstance(slow, tuple):
        assert got == slow
        return
    same_table(got.table, slow.table)
    same_quarantine(got, slow)
    if text in QUARANTINED + ACCEPTED:
        assert bool(slow.quarantined) == (text in QUARANTINED)


@pytest.mark.parametrize("between", [' "x",', ", 5", " true,", ", -", " true"])
def test_anything_but_whitespace_between_elements_is_the_readers_own_reason_to_fall_back(tmp_path, between):
    # Arrow would reject most of these too; the reader must not depend on it to stay exact.
    path = tmp_path / "pool.json"
    path.write_text("[" + GOOD + between + ("" if between == " true" else " " + GOOD) + "]", encoding="utf-8")
    with pytest.raises(NotClean, match="something other than whitespace between elements"):
        arrow_json_array._ArrayReader(path, 0, {}, None, None).read()


def test_bad_utf8_falls_back(tmp_path, monkeypatch):
    for bad in (b'{"instruction": "q\xff", "output": "a"}', b'{"instruction": "q", "output": "a", "k\xc3": 1}',
                b'{"instruction": "q", "output": "a", "k": "\xed\xa0\x80"}'):
        path = tmp_path / "pool.json"
        path.write_bytes(b"[" + GOOD.encode() + b",\n" + bad + b"]")
        assert read_clean_json_array(path, 0, {}, None, None) is None
        loaded, slow = read_pool(path), per_record(monkeypatch, path)
        same_table(loaded.table, slow.table)
        same_quarantine(loaded, slow)


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5, 0])
@pytest.mark.parametrize("chunk", [60, 1 << 20])
def test_quarantined_rows_and_limit_count_as_in_the_per_record_path(tmp_path, monkeypatch, limit, chunk):
    """``limit`` counts kept rows; a bad row after the last one kept is never read."""
    bad = iter(QUARANTINED)
    elements = [GOOD.replace('"q"', f'"q{i}"') if kind == "+" else next(bad) for i, kind in enumerate("+-+--+-+-+")]
    (tmp_path / "pool.json").write_text("[" + ",\n ".join(elements) + "]", encoding="utf-8")
    monkeypatch.setattr(arrow_jsonl, "CHUNK_BYTES", chunk)
    loaded, _ = both_ways(monkeypatch, tmp_path / "pool.json", limit=limit)
    assert len(loaded.table) == min(limit or 5, 5)


def test_renamed_fields(tmp_path, monkeypatch):
    recs = [{"prompt": f"p{i}", "response": f"r{i}", "output": "an extra"} for i in range(30)]
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(recs, indent=2))
    both_ways(monkeypatch, path, fields={"instruction": "prompt", "output": "response"})


def test_an_element_longer_than_the_chunk_and_trailing_space_past_it(tmp_path, monkeypatch):
    recs = [{"instruction": "q" * 5000, "output": "a"}, {"instruction": "w", "output": "b" * 3000}]
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(recs, indent=2) + " \n" * 500)
    for chunk in (100, 1000, 1 << 20):
        monkeypatch.setattr(arrow_jsonl, "CHUNK_BYTES", chunk)
        both_ways(monkeypatch, path)
    path.write_text(json.dumps(recs, indent=2) + " \n" * 500 + "x")
    monkeypatch.setattr(arrow_jsonl, "CHUNK_BYTES", 100)
    assert read_clean_json_array(path, 0, {}, None, None) is None
    with pytest.raises(PoolError, match="Extra data"):
        read_pool(path)



@pytest.mark.parametrize("after", [',\n {"instruction": "q" "output": "a"}]', ',\n {"instruction": "q", "output": "a"} x',
                                   "] x", ',\n {"instruction": "q", "output": "a", "tags": []}]'])
def test_with_a_limit_the_element_after_the_last_row_is_read_as_the_per_record_path_reads_it(
        tmp_path, monkeypatch, after):
    """The per-record path decodes one element past ``limit`` rows (or the array's end) and
    fails where that is malformed: so does the fast path, wherever the chunks end."""
    path = tmp_path / "pool.json"
    path.write_text("[" + GOOD + ",\n " + GOOD.replace('"q"', '"q1"') + after, encoding="utf-8")
    for chunk in [*range(20, 140, 7), 1 << 20]:
        monkeypatch.setattr(arrow_jsonl, "CHUNK_BYTES", chunk)
        got, slow = _outcome(read_pool, path, limit=2), _outcome(per_record, monkeypatch, path, limit=2)
        if isinstance(slow, tuple):
            assert got == slow, chunk
        else:
            same_table(got.table, slow.table)


INSERTS = [b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b" ", b"\n", b"\r", b"\t", b"1", b"e", b"N", b"\x00", b"\xff",
           b"\xc3", b"-", b".", b"true", b"null", b"\\u", b"\\ud800", b"{}", b"[]", b'"a":1,', b',"x":"y"', b"\xef\xbb\xbf"]


@pytest.mark.parametrize("seed", range(4))
def test_mutated_arrays_read_as_the_per_record_path_reads_them(tmp_path, monkeypatch, seed):
    """Small pools with bytes inserted, deleted or repeated anywhere: the same table and
    quarantine as the per-record path, or the same error, in any chunking, with or without limit."""
    rng = random.Random(seed)
    path = tmp_path / "pool.json"
    for _ in range(60):
        recs = mixed_records(rng, rng.randint(1, 6), ["plain", "ü ✓ 😀", "line\nbreak", 'quote " \\', "\\", "{[,]}", ""],
                             bad_rows=rng.random() < 0.5)
        b = bytearray(json.dumps(recs, ensure_ascii=rng.random() < 0.3, indent=rng.choice([None, 1, 4, "\t"])).encode())
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            at, kind = rng.randrange(len(b) + 1), rng.random()
            if kind < 0.5:
                b[at:at] = rng.choice(INSERTS)
            elif kind < 0.8:
                del b[min(at, len(b) - 1)]
            else:
                lo, hi = sorted((at, rng.randrange(len(b) + 1)))
                b[at:at] = b[lo:hi][:50]
        path.write_bytes(bytes(b))
        monkeypatch.setattr(arrow_jsonl, "CHUNK_BYTES", rng.choice([7, 64, 300, 1 << 20]))
        kw = rng.choice([{}, {"limit": rng.randint(1, 6)}, {"spill_rows": 2, "spill_dir": tmp_path / "spill"}])
        got, slow = _outcome(read_pool, path, **kw), _outcome(per_record, monkeypatch, path, **kw)
        if isinstance(slow, tuple):
            assert got == slow
        else:
            same_table(got.table, slow.table)
            same_quarantine(got, slow)
