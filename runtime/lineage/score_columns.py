"""The columns ``pool.scores.parquet`` is built from: a score over every loaded sample, and
a text column of a few distinct names (steps, pools) as small codes.

A 10M-row pool's lineage must not copy what the steps already hold: a ``ScoreColumn`` adopts
a step's column as held and writes into a copy only when a later step brings other values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dslrun.runtime.data.lazy_column import LazyColumn, slice_rows, take_rows, values_of


class Codes:
    """A text column of a few distinct values (step and pool names) as small integer codes; -1: none."""

    def __init__(self, names: list[str], codes: np.ndarray):
        self.names, self.codes = names, codes

    @classmethod
    def constant(cls, name: str, n: int) -> Codes:
        return cls([name], np.broadcast_to(np.int16(0), (n,)))

    @classmethod
    def of(cls, values: list[str]) -> Codes:
        names = list(dict.fromkeys(values))
        code = {v: i for i, v in enumerate(names)}
        return cls(names, np.fromiter((code[v] for v in values), np.int16, len(values)))

    @classmethod
    def empty(cls, n: int) -> Codes:
        return cls([], np.full(n, -1, dtype=np.int16))

    def set(self, at: np.ndarray, name: str) -> None:
        if name not in self.names:
            self.names.append(name)
        self.codes[at] = self.names.index(name)

    def __getitem__(self, rows: slice) -> np.ndarray:
        """These rows as an object array of names (None where there is none)."""
        names = np.empty(len(self.names) + 1, dtype=object)
        names[1:] = self.names
        return names[self.codes[rows] + 1]


class ScoreColumn:
    """One score column over every loaded sample: typed (numbers, with a mask of the samples
    that have a value) while every step's values are numbers, Python objects otherwise. A
    million-row pool's numbers as Python objects were most of a run's peak memory.

    A step's column that covers every sample in order is adopted as the step holds it
    (``source``), not copied; it is copied only when a later step writes other values. A
    later step that passes on the same values for some rows (a subset of them, ranked) writes
    nothing."""

    def __init__(self, n: int, dtype: np.dtype):
        self.dtype = dtype
        self.typed = dtype.kind in "biuf"
        self._values = np.zeros(n, dtype) if self.typed else np.full(n, None, dtype=object)
        self._valid: np.ndarray | None = np.zeros(n, dtype=bool)  # None: every sample has a value
        self.source: Any = None  # an adopted step column (an array or a LazyColumn)
        self.last: tuple[int, int] | None = None  # (id of the stored column, id of its table's _row) put last

    @classmethod
    def adopt(cls, stored: Any, dtype: np.dtype) -> ScoreColumn:
        col = cls(0, dtype)
        col.source, col._valid = stored, None
        return col

    @property
    def values(self) -> np.ndarray:
        if self.source is not None:
            src = values_of(self.source)
            return src if self.typed else np.asarray(src, dtype=object)
        return self._values

    @property
    def valid(self) -> np.ndarray:
        return np.ones(len(self.values), dtype=bool) if self._valid is None else self._valid

    def _own(self) -> None:
        """Copy an adopted column before writing to it (it is a step's own array)."""
        if self.source is not None:
            values = self.values
            self._values = values.copy() if values is self.source else values
            self.source, self._valid = None, np.ones(len(self._values), dtype=bool)

    def holds(self, at: np.ndarray, values: np.ndarray) -> bool:
        """Whether the samples at ``at`` have these numbers already (same type): nothing to write."""
        if not self.typed or values.dtype != self.dtype:
            return False
        if self._valid is not None and not self._valid[at].all():
            return False
        if self.source is not None:
            current = values_of(take_rows(self.source, at))
        else:
            current = self._values[at]
        return bool(np.array_equal(current, values, equal_nan=values.dtype.kind == "f"))

    def put(self, at: np.ndarray, values: np.ndarray) -> None:
        if self.holds(at, values):
            return
        self._own()
        assert self._valid is not None
        if self.typed and values.dtype.kind not in "biuf":
            objects = np.full(len(self._values), None, dtype=object)
            objects[self._valid] = self._values[self._valid].astype(object)
            self._values, self.typed = objects, False
        if self.typed and values.dtype != self._values.dtype:
            self._values = self._values.astype(np.result_type(self._values.dtype, values.dtype))
        self.dtype = self._values.dtype
        self._values[at] = values if self.typed else np.asarray(values, dtype=object)
        self._valid[at] = True

    def __getitem__(self, i: int) -> Any:
        if self.source is not None:
            return self.source.value(i) if isinstance(self.source, LazyColumn) else self.source[i]
        return self._values[i] if self._valid is not None and self._valid[i] else None

    def numbers(self) -> bool:
        """Written as numbers a row group at a time (``arrow``), or else as free-form values whole."""
        return self.typed and (self._valid is None or bool(self._valid.any()))

    def arrow(self, lo: int, hi: int) -> Any:
        import pyarrow as pa

        if self.source is not None:
            values = values_of(slice_rows(self.source, lo, hi))
            return pa.array(values, mask=np.zeros(len(values), dtype=bool), from_pandas=True)  # NaN: null
        assert self._valid is not None
        return pa.array(self._values[lo:hi], mask=~self._valid[lo:hi], from_pandas=True)

    def output(self) -> list[Any]:
        """Free-form values (``numbers()`` is false): a list with None where a sample has none."""
        return [v if ok else None for v, ok in zip(self.values.tolist(), self.valid.tolist())]
