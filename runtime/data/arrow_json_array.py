"""Reading a clean Alpaca pool that is one JSON array with Arrow's JSON reader, as clean JSONL is
(arrow_jsonl.py), instead of element by element (json_stream.py).

Each chunk of the file is lexed with numpy over its bytes: quotes not escaped by an odd run of
backslashes open and close strings, and the brackets and commas outside strings, with their
running depth, give each top-level element's span. Arrow then parses the chunk with the
array's brackets and the top-level commas blanked: whitespace-separated objects, one row each,
in whatever layout the file has (pretty-printed or compact, one element per line or many). The
rows go through the JSONL reader's machinery (``_Reader._rows``): quarantine, text kept as
Arrow arrays, ids, and each record kept in the file as its element's byte span
(``SourceLines``), so ``save`` decodes the element's own text.

As for JSONL, the fast path gives the table the per-record path gives, or nothing: it reads only
files whose every element is a flat object (string, number, true/false/null values) and raises
``NotClean`` — the file is then read element by element — at anything else: a byte order mark,
an element that is not an object, a nested array or object, NaN/Infinity, an integer of more
digits than int64 holds, anything but whitespace between elements or after the array, an empty
array, a run of more than ``MAX_BACKSLASHES`` backslashes before a quote; and at what the JSONL
path falls back on: a control character in a string or bad JSON (Arrow rejects them), bad
UTF-8, duplicate keys, a field that is text in some rows and not in others.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from dslrun.runtime.data.arrow_jsonl import NotClean, _Reader, read_clean
from dslrun.runtime.data.table import Table

MAX_DIGITS = 18  # digits in a row outside strings: more may be an integer Arrow reads as a float
MAX_BACKSLASHES = 64  # before a quote: a longer run is counted one step at a time, so it falls back


def _table(chars: bytes) -> np.ndarray:
    t = np.zeros(256, dtype=np.uint8)
    t[list(chars)] = 1
    return t


_SPACE = b" \t\n\r"  # JSON's whitespace (json.loads's and Arrow's)
# Bytes that may stand outside strings in a flat object: punctuation, numbers, true/false/null
# (not NaN or Infinity, other letters, backslashes, control characters, non-ASCII, a BOM).
_BAD_OUTSIDE = 1 - _table(_SPACE + b'{}[],:"0123456789+-.eEtruefalsn')
_TOKEN = _table(b"{}[],0123456789")  # outside strings: structure, and digits to count
_NOT_SPACE = 1 - _table(_SPACE)
_OPEN, _CLOSE, _DIGIT = _table(b"{["), _table(b"}]"), _table(b"0123456789")
# The top-level tokens of a block: the array's opening bracket (in the first block only), each
# element's braces and the comma after it, then the closing bracket or a last element cut short.
_TOP = re.compile(rb"(\[?)((?:\{\},)*)(\{\}\]|\{\}|\{)?")


def read_clean_json_array(path: Path, limit: int, fields: dict[str, str], spill_rows: int | None,
                          spill_root: str | Path | None) -> tuple[Table, list[Any]] | None:
    """The pool's table and its quarantined rows (``pool_files.Quarantined``), or None when some
    element needs the per-record path (nothing is kept)."""
    return read_clean(_ArrayReader, path, limit, fields, spill_rows, spill_root)


class _ArrayReader(_Reader):
    FORMAT = "json"
    NEWLINES_IN_VALUES = True  # a pretty-printed element spans lines
    LONG_INTEGERS_UNCHECKED = False  # _check_numbers sends every run of more than MAX_DIGITS digits away

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.closed = False  # the array's closing bracket has been read

    def _check_first_record(self) -> None:
        pass  # _block checks the first element once it has it whole

    def _block(self, data: bytes, base: int, last: bool) -> tuple[int, bool]:
        a = np.frombuffer(data, dtype=np.uint8)
        if self.closed:  # only whitespace may follow the array
            if np.any(_NOT_SPACE[a]):
                raise NotClean("data after the array")
            return len(a), last
        out = _outside_strings(a)  # where each byte outside strings stands
        b = a[out]
        if np.any(_BAD_OUTSIDE[b]):
            raise NotClean("a byte outside strings that json.loads or Arrow may read otherwise "
                           "(NaN, Infinity, a backslash, a BOM, ...)")
        hit = np.flatnonzero(_TOKEN[b])
        pos, tok = out[hit], b[hit]
        digits = _DIGIT[tok].astype(bool)
        _check_numbers(pos[digits])
        pos, tok = pos[~digits], tok[~digits]
        delta = _OPEN[tok].astype(np.int64) - _CLOSE[tok]
        after = np.cumsum(delta) + (0 if base == 0 else 1)  # a block after the first starts in the array
        before = after - delta
        if np.any(after < 0) or np.any(before[delta > 0] >= 2):
            raise NotClean("a nested array or object, or unbalanced brackets")
        top = np.minimum(before, after) <= 1  # the array's brackets, elements' braces, commas between
        pos, tok = pos[top], tok[top]
        m = _TOP.fullmatch(tok.tobytes())
        if m is None or bool(m.group(1)) != (base == 0):
            raise NotClean("an element that is not an object, a missing or extra comma, or data around the array")
        if last and m.group(3) != b"{}]":
            raise NotClean("an empty array, or one that does not end")
        gaps = tok != ord("{")  # from each other token to the next one: whitespace only
        gap_ends = np.append(pos[1:], len(a))[gaps]
        if len(pos) and np.any(_NOT_SPACE[a[_ranges(np.append(0, pos[gaps] + 1), np.append(pos[0], gap_ends))]]):
            raise NotClean("something other than whitespace between elements")
        whole = len(m.group(2)) // 3 + (m.group(3) == b"{}]")  # elements complete in this block
        if not whole:
            return 0, False  # read on: the first element is longer than the block
        lead = len(m.group(1))
        opens, closes, seps = (pos[lead + i:lead + 3 * whole:3] for i in range(3))
        if base == 0:
            self._check_first(bytes(data[opens[0]:closes[0] + 1]))
        self.closed = m.group(3) == b"{}]"
        cut = len(a) if self.closed else int(seps[-1]) + 1
        buf = a[:cut].copy()
        buf[seps] = ord(" ")  # Arrow reads whitespace-separated objects
        if lead:
            buf[pos[0]] = ord(" ")
        starts = np.concatenate([[0], seps[:-1] + 1])
        done = self._rows(buf.data, starts, seps + 1, base + opens, base + closes + 1)
        if done and self.lines.last() == self.seen - 1:
            # ``limit`` rows, the last one the block's last element: the per-record path decodes
            # one element more (or checks the array's end), and fails if that is malformed; read on
            # to check it too (_rows keeps no more rows)
            done = False
        return cut, done or last


def _outside_strings(a: np.ndarray) -> np.ndarray:
    """The positions of the bytes outside strings (closing quotes included, opening ones not);
    ``a`` starts outside any string. A quote preceded by an odd run of backslashes is escaped."""
    quotes = np.flatnonzero(a == ord('"'))
    after = quotes[quotes > 0]
    run = after[a[after - 1] == ord("\\")]
    back = 1
    while len(run):  # quotes behind at least ``back`` backslashes (runs are short)
        if back > MAX_BACKSLASHES:
            raise NotClean("a long run of backslashes")
        longer = (run > back) & (a[np.maximum(run - back - 1, 0)] == ord("\\"))
        if back % 2:
            quotes = quotes[~np.isin(quotes, run[~longer], assume_unique=True)]
        run, back = run[longer], back + 1
    opens, closes = quotes[0::2], quotes[1::2]
    ends = opens if len(quotes) % 2 else np.append(opens, len(a))  # a block may end inside a string
    return _ranges(np.append(0, closes), ends)


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``starts[0]:ends[0]``, ``starts[1]:ends[1]``, ... as one array of positions."""
    lengths = ends - starts
    before = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - before, lengths)


def _check_numbers(digits: np.ndarray) -> None:
    """``digits``: where the digits outside strings stand. A run of more than ``MAX_DIGITS`` may
    be an integer past int64, a float to Arrow and an int to json.loads."""
    if len(digits) > MAX_DIGITS:
        breaks = np.flatnonzero(np.diff(digits) != 1)
        run_first = digits[np.concatenate([[0], breaks + 1])]
        run_last = digits[np.append(breaks, len(digits) - 1)]
        if np.any(run_last - run_first >= MAX_DIGITS):
            raise NotClean("a number of many digits")
