"""A numpy array built a chunk at a time, in one buffer that grows in place.

A reader of millions of rows that keeps a list of per-chunk arrays and concatenates them at
the end holds every value twice at that moment, and leaves the chunks' memory scattered in
the heap. Appending to one ``bytearray`` grows it by reallocation (for large buffers the
allocator remaps pages instead of copying), and the finished array is a view of it.
"""

from __future__ import annotations

import numpy as np


class Appender:
    def __init__(self, dtype: np.dtype | type | str):
        self.dtype = np.dtype(dtype)
        self.buf = bytearray()

    def add(self, values: np.ndarray) -> None:
        self.buf += np.ascontiguousarray(values, dtype=self.dtype).data.cast("B")

    def __len__(self) -> int:
        return len(self.buf) // self.dtype.itemsize

    def last(self) -> int | None:
        """The last value appended (None when empty)."""
        size = self.dtype.itemsize
        return np.frombuffer(self.buf[-size:], dtype=self.dtype)[0].item() if self.buf else None

    def array(self) -> np.ndarray:
        """The values so far (a view of the buffer: call once, when done appending)."""
        return np.frombuffer(self.buf, dtype=self.dtype)
