"""Columnar tables keyed by a stable sample id.

A ``Table`` is an ordered mapping of column name → numpy array (object arrays
for text and lists, 2-D arrays for vectors). Operators add columns or select
rows; they never mutate a table in place. Columns whose names start with ``_``
are bookkeeping (``_row``: position in the source pool, ``_record``: the
original record, written back by ``save``) and are hidden from expressions.

A large pool's text, records and messages are ``LazyColumn``s (runtime/data/lazy_column.py:
Arrow batches, files, or derived from other columns): row selection composes indices without
reading them, and ``column`` reads a column's values only for a step that asks. Steps that
only need to walk one (``save``) use ``blocks``, steps that compute on whole columns
``arrow_blocks``; a glance at one value (the report) uses ``value``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from dslrun.runtime.data.lazy_column import BLOCK_ROWS, LazyColumn


def as_column(values: Sequence[Any] | np.ndarray, kind: str | None = None) -> np.ndarray:
    """A numpy column for ``values``; text, lists and mixed values become object arrays."""
    if isinstance(values, np.ndarray):
        return values
    values = list(values)
    if kind in ("str", "list", "any", "json"):
        return _object(values)
    if kind == "vector":  # cached as float16; computed on as float32
        return np.stack([np.asarray(v, dtype=np.float32) for v in values]) if values else np.zeros((0, 0), np.float32)
    if kind in ("int", "float", "bool"):
        if any(v is None for v in values):
            if kind == "bool":
                return _object(values)
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        return np.asarray(values, dtype={"int": np.int64, "float": np.float64, "bool": bool}[kind])
    if values and all(isinstance(v, (bool, np.bool_)) for v in values):
        return np.asarray(values, dtype=bool)
    if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        try:
            return np.asarray(values, dtype=np.int64)
        except OverflowError:  # an integer past int64 (10**20): kept as the Python ints they are
            return _object(values)
    if values and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) or v is None for v in values):
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return _object(values)


def _object(values: list) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values if values else []
    return arr


# A stored column: in memory, or read when asked for.
Stored = np.ndarray | LazyColumn


class Table:
    def __init__(self, columns: Mapping[str, Stored], meta: Mapping[str, Any] | None = None):
        self._cols = dict(columns)
        lengths = {len(c) for c in self._cols.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of unequal length: { {k: len(v) for k, v in self._cols.items()} }")
        self._n = lengths.pop() if lengths else 0
        self.meta: dict[str, Any] = dict(meta or {})

    def __len__(self) -> int:
        return self._n

    def __contains__(self, name: str) -> bool:
        return name in self._cols

    @property
    def column_names(self) -> list[str]:
        """Columns visible to expressions (bookkeeping ``_`` columns excluded)."""
        return [c for c in self._cols if not c.startswith("_")]

    @property
    def all_columns(self) -> list[str]:
        return list(self._cols)

    def column(self, name: str) -> np.ndarray:
        col = self._cols[name]
        return col.values() if isinstance(col, LazyColumn) else col

    def get(self, name: str, default=None):
        return self.column(name) if name in self._cols else default

    def on_disk(self, name: str) -> bool:
        col = self._cols[name]
        return isinstance(col, LazyColumn) and col.on_disk

    def ndim(self, name: str) -> int:
        return self._cols[name].ndim

    def dtype(self, name: str) -> np.dtype:
        return self._cols[name].dtype

    def value(self, name: str, row: int) -> Any:
        """One value, without reading the rest of an on-disk column."""
        col = self._cols[name]
        return col.value(row) if isinstance(col, LazyColumn) else col[row]

    def blocks(self, name: str, rows: int = BLOCK_ROWS) -> Iterator[list[Any] | np.ndarray]:
        """A column's values a block of rows at a time (bounded memory for on-disk columns)."""
        col = self._cols[name]
        if isinstance(col, LazyColumn):
            yield from col.blocks(rows)
            return
        for i in range(0, len(col), rows):
            yield col[i:i + rows]

    def arrow_blocks(self, name: str, rows: int = BLOCK_ROWS) -> Iterator[Any] | None:
        """A column's rows as ``pyarrow`` arrays a block at a time when it is held in Arrow, else None."""
        col = self._cols[name]
        return col.arrow_blocks(rows) if isinstance(col, LazyColumn) else None

    def arrow(self, name: str) -> Any | None:
        """A column held in Arrow as one Arrow array (no Python object per value), else None."""
        col = self._cols[name]
        return col.arrow() if isinstance(col, LazyColumn) else None

    def stored(self, name: str) -> Stored:
        """The column as the table holds it (an array or a ``LazyColumn``): for identity checks
        and compact forms, without making its values."""
        return self._cols[name]

    @property
    def ids(self) -> np.ndarray:
        return self.column("id")

    def take(self, indices: Iterable[int] | np.ndarray) -> Table:
        idx = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices), dtype=np.int64)
        return Table({k: v.take(idx) if isinstance(v, LazyColumn) else v[idx] for k, v in self._cols.items()},
                     self.meta)

    def mask(self, keep: np.ndarray) -> Table:
        return self.take(np.flatnonzero(np.asarray(keep, dtype=bool)))

    def select(self, names: Sequence[str]) -> Table:
        """These columns only (as stored: on-disk columns stay on disk)."""
        return Table({c: self._cols[c] for c in names}, self.meta)

    def with_columns(self, new: Mapping[str, Stored]) -> Table:
        cols = dict(self._cols)
        for k, v in new.items():
            if len(v) != self._n:
                raise ValueError(f"column {k!r} has {len(v)} values for {self._n} rows")
            cols[k] = v
        return Table(cols, self.meta)

    def slice(self, start: int, stop: int) -> Table:
        return Table({k: v.slice(start, stop) if isinstance(v, LazyColumn) else v[start:stop]
                      for k, v in self._cols.items()}, self.meta)

    def rows(self, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        names = list(columns) if columns is not None else self.column_names
        cols = [self.column(c) for c in names]
        return [{n: _plain(c[i]) for n, c in zip(names, cols)} for i in range(self._n)]

    def __repr__(self) -> str:
        return f"Table({self._n} rows; {', '.join(self.column_names)})"


def _plain(x: Any) -> Any:
    """numpy scalars and arrays → JSON-friendly Python values."""
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and np.isnan(x):
        return None
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x


def concat(tables: Sequence[Table]) -> Table:
    if not tables:
        return Table({})
    names = tables[0].all_columns
    cols: dict[str, Stored] = {}
    for n in names:
        stored = [t._cols[n] for t in tables]
        first = stored[0]
        if isinstance(first, LazyColumn):
            joined = first.concat(stored[1:])  # type: ignore[arg-type]
            if joined is not None:
                cols[n] = joined
                continue
        parts = [t.column(n) for t in tables]
        cols[n] = np.concatenate(parts) if parts[0].dtype != object else _object([x for p in parts for x in p])
    return Table(cols, tables[0].meta)
