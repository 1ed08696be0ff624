"""Sample ids held as the 8 bytes they stand for, not as a Python string each.

A sample id is the first 16 hex digits of a SHA-256 (core/keys.py): 8 bytes. As Python
strings in an object array a pool's ids cost ~73 bytes a row (the biggest part of a
10M-row pool's memory, and small objects that fragment the heap); here they cost 8.
The digests are big-endian ``uint64``, so their numeric order is the ids' text order and
equality is integer equality. ``values`` makes the strings only for a step that asks
(model and API steps key their cache by them); Arrow gets them as a string array built from
one hex buffer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from dslrun.runtime.data.lazy_column import BLOCK_ROWS, ArrayColumn, values_of

DIGITS = 16
_HEX = re.compile(r"[0-9a-f]{16}")


class HexIds(ArrayColumn):
    """Ids of 16 lowercase hex digits, as big-endian ``uint64``s (``data``)."""

    def __init__(self, digests: np.ndarray):
        super().__init__(np.asarray(digests, dtype=">u8"))

    @property
    def digests(self) -> np.ndarray:
        return self.data

    @classmethod
    def of(cls, ids: Sequence[str] | np.ndarray) -> HexIds | None:
        """The compact column for these id strings, or None when one is not 16 lowercase hex digits."""
        ids = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
        if not all(isinstance(s, str) and _HEX.fullmatch(s) for s in ids):
            return None
        return cls(np.frombuffer(bytes.fromhex("".join(ids)), dtype=">u8"))

    def hex(self) -> bytes:
        """Every id's digits, back to back (16 bytes a row)."""
        return self.digests.tobytes().hex().encode("ascii")

    def joined(self, sep: bytes) -> bytes:
        """Every id's digits with ``sep`` between them, as ``sep.join`` of the strings gives."""
        if not len(self):
            return b""
        rows = np.frombuffer(self.hex(), dtype=np.uint8).reshape(-1, DIGITS)
        seps = np.broadcast_to(np.frombuffer(sep, dtype=np.uint8), (len(self), len(sep)))
        return np.hstack([rows, seps]).tobytes()[:-len(sep)] if sep else rows.tobytes()

    def read(self, positions: np.ndarray) -> list[Any]:
        text = self.digests[np.asarray(positions, dtype=np.int64)].tobytes().hex()
        return [text[i:i + DIGITS] for i in range(0, len(text), DIGITS)]

    def value(self, row: int) -> str:
        return self.digests[row:row + 1].tobytes().hex() if row >= 0 else self.value(len(self) + row)

    def arrow_blocks(self, rows: int = BLOCK_ROWS) -> Iterator[Any]:
        for i in range(0, len(self), rows):
            yield self.slice(i, i + rows).arrow()

    def arrow(self) -> Any:
        """All ids as one Arrow string array (no Python string made)."""
        import pyarrow as pa

        n = len(self)
        small = n * DIGITS < 2**31  # 32-bit offsets (Arrow's ``string``) while they fit
        offsets = np.arange(n + 1, dtype=np.int32 if small else np.int64) * DIGITS
        kind = pa.string() if small else pa.large_string()
        return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(offsets), pa.py_buffer(self.hex())])


def compact_ids(ids: np.ndarray) -> np.ndarray | HexIds:
    """``ids`` as a ``HexIds`` column when every one is a sample id; as they are otherwise."""
    return HexIds.of(ids) or ids


def equal_ids(a: Any, b: Any) -> np.ndarray:
    """Row by row, whether two id columns of the same length (as stored) hold the same id."""
    if isinstance(a, HexIds) and isinstance(b, HexIds):
        return a.digests == b.digests
    return np.asarray(np.asarray(values_of(a), dtype=object) == np.asarray(values_of(b), dtype=object), dtype=bool)


def rows_with_id(column: Any, sid: str) -> np.ndarray:
    """The rows of an id column (as stored) that hold ``sid``."""
    if isinstance(column, HexIds):
        if not _HEX.fullmatch(sid):
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(column.digests == np.frombuffer(bytes.fromhex(sid), dtype=">u8")[0])
    return np.flatnonzero(np.asarray(values_of(column), dtype=object) == sid)
