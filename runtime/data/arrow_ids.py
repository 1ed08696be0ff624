"""Sample ids of Alpaca rows held as Arrow arrays, without a Python string per field.

The id is ``core/keys.py: sample_id``: the first 16 hex digits of the SHA-256 of
``{"input":…,"instruction":…,"output":…}`` with each text normalised (``\\r\\n`` → ``\\n``,
NFC, Python's ``strip``) and JSON-encoded as ``json.dumps`` does without ``ensure_ascii``.
For rows whose three texts are ASCII, NFC changes nothing, Python's whitespace is ASCII
whitespace, and the JSON encoding is a few substring replacements: Arrow builds every blob
in C++ and Python only hashes each one. Other rows (and any row of an array with nulls) go
through ``sample_id``'s own code. tests/test_arrow_jsonl.py checks both agree on random text.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dslrun.core.keys import alpaca_sample_ids
from dslrun.runtime.data.arrow_text import non_ascii_rows, string_bytes

ASCII_SPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "
# json.encoder.encode_basestring's escapes, backslash first so later escapes are not doubled
SHORT = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
ESCAPES = {ord(c): e for c, e in SHORT.items()} | {
    c: f"\\u{c:04x}" for c in range(0x20) if chr(c) not in SHORT}


def alpaca_ids(instruction: Any, input_: Any, output: Any) -> np.ndarray:
    """``sample_id`` of each row, as the big-endian ``uint64`` of its 16 hex digits (id_column.py)."""
    import pyarrow as pa

    parts = (instruction, input_, output)
    n = len(instruction)
    if any(p.null_count for p in parts):
        return _digests(alpaca_sample_ids(*(p.to_pylist() for p in parts)))
    ids = np.zeros(n, dtype=">u8")
    other = np.unique(np.concatenate([non_ascii_rows(p) for p in parts]))
    if len(other):
        picked = pa.array(other)
        ids[other] = _digests(alpaca_sample_ids(*(p.take(picked).to_pylist() for p in parts)))
    ascii = np.ones(n, dtype=bool)
    ascii[other] = False
    if ascii.all():
        ids[:] = _ascii_ids(*parts)
    elif ascii.any():
        where = np.flatnonzero(ascii)
        ids[where] = _ascii_ids(*(p.take(pa.array(where)) for p in parts))
    return ids


def _digests(ids: Any) -> np.ndarray:
    return np.frombuffer(bytes.fromhex("".join(ids)), dtype=">u8")


def _ascii_ids(instruction: Any, input_: Any, output: Any) -> np.ndarray:
    import hashlib

    import pyarrow.compute as pc

    blob = pc.binary_join_element_wise('{"input":"', _encoded(input_), '","instruction":"', _encoded(instruction),
                                       '","output":"', _encoded(output), '"}', "")
    offsets, b = string_bytes(blob)
    data, sha, ends = b.data, hashlib.sha256, offsets.tolist()
    # The id's 16 hex digits are the digest's first 8 bytes.
    return np.frombuffer(b"".join([sha(data[x:y]).digest()[:8] for x, y in zip(ends, ends[1:])]), dtype=">u8")


def _encoded(arr: Any) -> Any:
    """The normalised text of ASCII strings, JSON-encoded (without the quotes)."""
    import pyarrow.compute as pc

    present = _bytes_present(arr)
    if ord("\r") in present:
        arr = pc.replace_substring(arr, "\r\n", "\n")
    arr = pc.utf8_trim(arr, characters=ASCII_SPACE)  # removes characters: none appears that was absent
    for code, escaped in ESCAPES.items():
        if code in present:
            arr = pc.replace_substring(arr, chr(code), escaped)
    return arr


def _bytes_present(arr: Any) -> set[int]:
    """Which of the bytes JSON escapes occur in the array's text."""
    _, b = string_bytes(arr)
    present = set(np.unique(b[b < 0x20]).tolist())
    return present | {c for c in (ord("\\"), ord('"')) if np.count_nonzero(b == c)}
