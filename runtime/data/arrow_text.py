"""Text measures over Arrow string arrays that give exactly what Python's ``len`` and
``str.split`` / ``str.strip`` give, so a step may compute on whole columns in C++.

RE2's ``\\s`` is ASCII whitespace only; Python's ``str.isspace()`` also counts the
information separators (``\\x1c``-``\\x1f``), NEL, no-break and ideographic spaces and more.
``PY_SPACE`` spells out Python's set; tests/test_arrow_jsonl.py checks it against Python for
every code point.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PY_SPACE = r"\t\n\x{0b}\x{0c}\r\x{1c}-\x{1f} \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
ONLY_SPACE = f"^[{PY_SPACE}]*$"  # s.strip() == ""
WORD = f"[^{PY_SPACE}]+"  # len(s.split()) counts these


def char_counts(arr: Any) -> np.ndarray:
    """``len(s)`` of each string (code points)."""
    import pyarrow.compute as pc

    return _ints(pc.utf8_length(arr))


def word_counts(arr: Any) -> np.ndarray:
    """``len(s.split())`` of each string. ASCII strings are counted over the array's bytes with
    numpy (a regex is ten times slower); the others, and arrays with nulls, with ``WORD``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if arr.null_count or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return _ints(pc.count_substring_regex(arr, WORD))
    counts, other = _ascii_word_counts(arr)
    if len(other):
        counts[other] = _ints(pc.count_substring_regex(arr.take(pa.array(other)), WORD))
    return counts


def _ints(arr: Any) -> np.ndarray:
    """An Arrow integer array (nulls as 0) as int64."""
    import pyarrow.compute as pc

    return np.asarray(pc.fill_null(arr, 0).to_numpy(zero_copy_only=False), dtype=np.int64)


def string_bytes(arr: Any) -> tuple[np.ndarray, np.ndarray]:
    """A string array's UTF-8 bytes (one numpy view, no copy) and each string's offsets into
    them (``len(arr) + 1`` of them, the first 0)."""
    import pyarrow as pa

    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype=width)[arr.offset:arr.offset + len(arr) + 1].astype(np.int64)
    if data_buf is None or not len(arr):
        return np.zeros(max(len(offsets), 1), dtype=np.int64), np.zeros(0, dtype=np.uint8)
    lo = offsets[0]
    return offsets - lo, np.frombuffer(data_buf, dtype=np.uint8)[lo:offsets[-1]]


def non_ascii_rows(arr: Any) -> np.ndarray:
    """The rows (ascending) whose string has a byte outside ASCII."""
    offsets, b = string_bytes(arr)
    return np.unique(np.searchsorted(offsets[1:], np.flatnonzero(b >= 128), side="right"))


def _ascii_word_counts(arr: Any) -> tuple[np.ndarray, np.ndarray]:
    """Word starts (a non-space byte first in its string or after a space) per string, as if
    every byte were a character, and the rows that are not ASCII (where that is not exact)."""
    offsets, b = string_bytes(arr)
    if not len(b):
        return np.zeros(len(arr), dtype=np.int64), np.zeros(0, dtype=np.int64)
    # Python's ASCII whitespace: \t \n \v \f \r (9-13), \x1c-\x1f (28-31) and space; uint8
    # arithmetic wraps, so one comparison tests each range.
    space = (b == 32) | ((b - np.uint8(9)) <= 4) | ((b - np.uint8(28)) <= 3)
    starts = np.empty_like(space)
    starts[0] = not space[0]
    np.logical_and(space[:-1], ~space[1:], out=starts[1:])
    firsts = offsets[:-1][offsets[1:] > offsets[:-1]]  # the first byte of each non-empty string
    starts[firsts] = ~space[firsts]
    at = np.flatnonzero(starts)
    counts = np.searchsorted(at, offsets[1:]) - np.searchsorted(at, offsets[:-1])
    return counts.astype(np.int64), non_ascii_rows(arr)
