"""Integer columns held in the narrowest type that fits them, read back as ``int64``.

``length`` adds eight count columns to every row; as ``int64`` that is 64 bytes a row, the
largest part of a 10M-row run's memory after the ids. Counts of characters and words fit
in 16 or 32 bits, so they are held so and widened when a step reads them: every reader
sees the ``int64`` array it saw before (same values, same type), for a moment.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from dslrun.runtime.data.lazy_column import BLOCK_ROWS, ArrayColumn

NARROW = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32)  # the first that holds them


class PackedInts(ArrayColumn):
    """``int64`` values stored as ``data``, a narrower integer array of the same values."""

    dtype = np.dtype(np.int64)

    @property
    def packed(self) -> np.ndarray:
        return self.data

    @classmethod
    def of(cls, values: np.ndarray) -> np.ndarray | PackedInts:
        """``values`` (``int64``) packed when a narrower type holds them all, else as they are."""
        if values.dtype != np.int64 or values.ndim != 1 or not len(values):
            return values
        lo, hi = int(values.min()), int(values.max())
        for narrow in NARROW:
            info = np.iinfo(narrow)
            if info.min <= lo and hi <= info.max:
                return cls(values.astype(narrow))
        return values

    def values(self) -> np.ndarray:
        return self.packed.astype(np.int64)

    def read(self, positions: np.ndarray) -> list[Any]:
        return self.packed[np.asarray(positions, dtype=np.int64)].astype(np.int64).tolist()

    def value(self, row: int) -> Any:
        return np.int64(self.packed[row])

    def blocks(self, rows: int = BLOCK_ROWS) -> Iterator[Any]:
        for i in range(0, len(self), rows):
            yield self.packed[i:i + rows].astype(np.int64)
