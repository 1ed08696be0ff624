"""A column whose values are read (or computed) only when a step asks for them.

A large pool's text, its source records and its chat messages are not held as Python objects:
they stay in Arrow batches (arrow_columns.py), in files (disk_columns.py) or are derived from
other columns on demand (derived_column.py). Row selection (``take``, ``slice``, ``concat``)
composes row indices and reads nothing; ``values`` turns the rows into a numpy object array,
``blocks`` walks them with bounded memory, and ``arrow_blocks`` hands Arrow arrays to steps
that compute on whole columns (``length``) without making a Python object per value.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

BLOCK_ROWS = 65_536  # rows read at a time when a caller walks a column


class LazyColumn:
    """Some rows of a column held elsewhere, in a table's order. Quacks enough like a 1-D
    object array for length and shape checks; ``values()`` makes it one."""

    dtype = np.dtype(object)
    ndim = 1

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def on_disk(self) -> bool:
        """Its values live in files (not in this process's memory)."""
        return True

    def take(self, idx: np.ndarray) -> LazyColumn:
        raise NotImplementedError

    def read(self, positions: np.ndarray) -> list[Any]:
        """The values of these rows (of this column, in this order) as Python objects."""
        raise NotImplementedError

    def slice(self, start: int, stop: int) -> LazyColumn:
        return self.take(np.arange(*slice(start, stop).indices(len(self)), dtype=np.int64))

    def values(self) -> np.ndarray:
        out = np.empty(len(self), dtype=object)
        out[:] = self.read(np.arange(len(self), dtype=np.int64)) if len(self) else []
        return out

    def value(self, row: int) -> Any:
        return self.read(np.array([row], dtype=np.int64))[0]

    def blocks(self, rows: int = BLOCK_ROWS) -> Iterator[list[Any]]:
        for i in range(0, len(self), rows):
            yield self.read(np.arange(i, min(i + rows, len(self)), dtype=np.int64))

    def arrow_blocks(self, rows: int = BLOCK_ROWS) -> Iterator[Any] | None:
        """The rows as ``pyarrow`` arrays a block at a time, or None when the column is not
        held in Arrow (the caller then walks ``blocks``)."""
        return None

    def arrow(self) -> Any | None:
        """All rows as one ``pyarrow`` array, or None when the column is not held in Arrow."""
        blocks = self.arrow_blocks()
        if blocks is None:
            return None
        import pyarrow as pa

        parts = list(blocks)
        return pa.concat_arrays(parts) if parts else pa.array([], pa.string())

    def concat(self, others: Sequence[LazyColumn]) -> LazyColumn | None:
        """One column over ``self`` and ``others`` without reading them, or None when they are
        not rows of the same stored column (the caller then concatenates values)."""
        return None

    def __reduce__(self) -> tuple:
        # Another process (a Ray worker) cannot read this process's temporary files or
        # memory: a pickled column travels as its values.
        return _as_array, (self.values(),)


class ArrayColumn(LazyColumn):
    """A column held in memory as a compact numpy array (``data``: one entry a row), turned
    into the values steps see when they ask (id_column.py, packed_ints.py)."""

    def __init__(self, data: np.ndarray):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    @property
    def on_disk(self) -> bool:
        return False

    def take(self, idx: np.ndarray) -> ArrayColumn:
        return type(self)(self.data[np.asarray(idx, dtype=np.int64)])

    def slice(self, start: int, stop: int) -> ArrayColumn:
        return type(self)(self.data[start:stop])

    def concat(self, others: Sequence[LazyColumn]) -> ArrayColumn | None:
        if not all(type(o) is type(self) for o in others):
            return None
        return type(self)(np.concatenate([self.data, *(o.data for o in others)]))  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} rows as {self.data.dtype})"


class StoredColumn(LazyColumn):
    """Some rows of a column of ``store`` (``store.read(name, positions)``), in a table's order;
    ``stored_rows``: how many rows the store holds."""

    def __init__(self, store: Any, name: str, index: np.ndarray | None, stored_rows: int):
        self.store, self.name = store, name
        self.index = index  # rows of the stored column; None: all of them, in order
        self._stored = stored_rows
        self._n = stored_rows if index is None else len(index)

    def __len__(self) -> int:
        return self._n

    def positions(self) -> np.ndarray:
        return np.arange(self._n, dtype=np.int64) if self.index is None else self.index

    def take(self, idx: np.ndarray) -> StoredColumn:
        idx = np.asarray(idx, dtype=np.int64)
        return type(self)(self.store, self.name, idx if self.index is None else self.index[idx], self._stored)

    def read(self, positions: np.ndarray) -> list[Any]:
        if not len(positions):
            return []
        return self.store.read(self.name, self.positions()[np.asarray(positions, dtype=np.int64)])

    def concat(self, others: Sequence[LazyColumn]) -> StoredColumn | None:
        parts = [p for p in others if type(p) is type(self) and p.store is self.store and p.name == self.name]
        if len(parts) != len(others):
            return None
        index = np.concatenate([self.positions(), *(p.positions() for p in parts)])
        return type(self)(self.store, self.name, index, self._stored)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self._n} rows in {self.store.dir or 'memory'})"


def values_of(stored: np.ndarray | LazyColumn) -> np.ndarray:
    """A column as held (an array or a ``LazyColumn``) as the array of its values."""
    return stored.values() if isinstance(stored, LazyColumn) else stored


def take_rows(stored: Any, idx: np.ndarray) -> Any:
    """These rows of a column as held (a ``LazyColumn`` composes them and reads nothing)."""
    return stored.take(idx) if isinstance(stored, LazyColumn) else stored[idx]


def slice_rows(stored: Any, lo: int, hi: int) -> Any:
    return stored.slice(lo, hi) if isinstance(stored, LazyColumn) else stored[lo:hi]


def _as_array(values: np.ndarray) -> np.ndarray:
    return values
