"""Streaming a JSON array gives json.loads's elements, and its error messages and positions."""

from __future__ import annotations

import json
import random

import pytest

from dslrun.runtime.data import json_stream
from dslrun.runtime.data.json_stream import JsonStreamError, NotAnArray, iter_json_array


def outcome_streamed(path):
    try:
        return "ok", list(iter_json_array(path))
    except JsonStreamError as e:
        return "error", e.msg, e.lineno, e.colno


def outcome_loaded(path):
    try:
        return "ok", json.loads(path.read_bytes().decode("utf-8", "surrogateescape"))
    except json.JSONDecodeError as e:
        return "error", e.msg, e.lineno, e.colno


CASES = ["[]", " [ ] \n", "[1,2,3]", "[12345, 678]", '[{"a":"b"},\n {"c":[1,2,{"d":null}]}]\n',
         '[{"a":"é✓ \\u00e9"}]', "[tru]", "[1,]", "[1 2]", '[{"a":1}]x', "", "[", "[{", "[1.]", "[true-1]",
         '[\n{"a":\n1,\n"b" 2}]', '[\n\n  {"x": "unterminated}]', '[true,false,null,-1.5e3,"s"]']


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 4096])
@pytest.mark.parametrize("text", CASES)
def test_small_documents_at_every_buffer_size(tmp_path, monkeypatch, text, chunk):
    monkeypatch.setattr(json_stream, "CHUNK", chunk)
    path = tmp_path / "p.json"
    path.write_text(text, encoding="utf-8")
    assert outcome_streamed(path) == outcome_loaded(path)


def random_value(rng: random.Random, depth: int = 0):
    kinds = [lambda: rng.randint(-10**6, 10**6), lambda: rng.random() * 10 ** rng.randint(-3, 8),
             lambda: "".join(rng.choice('ab\n"\\é✓ ') for _ in range(rng.randint(0, 8))),
             lambda: rng.choice([True, False, None])]
    if depth < 3:
        kinds += [lambda: [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))],
                  lambda: {str(i): random_value(rng, depth + 1) for i in range(rng.randint(0, 3))}]
    return rng.choice(kinds)()


def test_random_documents_and_their_truncations_match_json_loads(tmp_path, monkeypatch):
    rng = random.Random(0)
    path = tmp_path / "p.json"
    for _ in range(400):
        doc = [random_value(rng) for _ in range(rng.randint(0, 6))]
        text = json.dumps(doc, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1, 2]))
        for version in (text, text[:rng.randint(0, len(text))]):  # whole, and cut anywhere
            monkeypatch.setattr(json_stream, "CHUNK", rng.choice([1, 2, 3, 5, 8, 64]))
            path.write_text(version, encoding="utf-8")
            assert outcome_streamed(path) == outcome_loaded(path), version


def test_other_top_levels_are_left_to_the_caller(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"data": [1]}')
    with pytest.raises(NotAnArray):
        next(iter_json_array(path))


def test_bom_and_undecodable_bytes(tmp_path):
    path = tmp_path / "p.json"
    path.write_bytes(b'\xef\xbb\xbf[{"a": "x\xff"}]')
    assert list(iter_json_array(path)) == [{"a": "x\udcff"}]  # bad bytes stay visible for quarantine


def test_memory_holds_a_buffer_not_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(json_stream, "CHUNK", 1024)
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"output": "word " * 50, "i": i} for i in range(2000)]))  # ~0.5 MB
    seen = []
    real = json_stream._Buffer.more

    def watched(self):
        seen.append(len(self.text))
        return real(self)

    monkeypatch.setattr(json_stream._Buffer, "more", watched)
    assert [r["i"] for r in iter_json_array(path)] == list(range(2000))
    assert max(seen) < 4 * 1024
