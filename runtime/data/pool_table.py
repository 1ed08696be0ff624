"""Building a pool's table a block of rows at a time, as ``read_pool`` validates records.

Light columns (ids, turn counts, numeric extra fields) stay in memory; heavy ones (text,
messages, source records, text extra fields) move to Arrow IPC files (an ``ArrowStore``:
text as Arrow strings, other values pickled) once the pool passes the spill threshold, and
are appended there from then on, so a large pool's text is never all in memory
(ARCHITECTURE.md, "Large pools").
"""

from __future__ import annotations

import pickle
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from dslrun.runtime.data.arrow_columns import ArrowStore
from dslrun.runtime.data.id_column import compact_ids
from dslrun.runtime.data.table import Table, as_column

BASE = ("id", "instruction", "input", "output", "messages", "n_turns")


def _pickled(v: Any) -> bytes:
    return pickle.dumps(v, protocol=5)


class ColumnBuilder:
    """One column as a pool is read: values in a list, moved to an ``ArrowStore`` once the
    pool grows past the spill threshold (and appended there from then on). ``codec``: "str"
    (texts, kept as Arrow strings) or "obj" (anything, pickled)."""

    def __init__(self, codec: str, kind: str | None):
        self.codec, self.kind = codec, kind
        self.values: list[Any] = []
        self.store: ArrowStore | None = None
        self.name = ""
        self.plain = True  # only None/bool/int/float so far: such a column stays in memory

    def extend(self, values: list[Any]) -> None:
        if self.kind is None and self.plain:
            self.plain = all(v is None or isinstance(v, (bool, int, float)) for v in values)
        if self.store is not None:
            self._write(values)
        else:
            self.values.extend(values)

    def _write(self, values: list[Any]) -> None:
        import pyarrow as pa

        assert self.store is not None
        if self.codec == "str":  # kept rows' text is valid UTF-8 (record_checks.py quarantines the rest)
            self.store.extend(self.name, pa.array(values, pa.string()))
        else:
            self.store.extend(self.name, pa.array([_pickled(v) for v in values], pa.binary()), pickle.loads)

    def spill(self, store: ArrowStore, name: str) -> None:
        self.store, self.name = store, name
        self._write(self.values)
        self.values = []

    def finish(self) -> Any:
        if self.store is None:
            return as_column(self.values, self.kind)
        col = self.store.column(self.name)
        if self.kind is None and self.plain:  # numbers: small, and expressions compute on them
            return as_column(col.values().tolist())
        return col


# Columns that stay in memory however large the pool: what selection computes on.
_LIGHT = {"id": "str", "n_turns": "int"}
# Columns that go to disk in a large pool, with how they are encoded there.
_HEAVY = {"instruction": ("str", "str"), "input": ("str", "str"), "output": ("str", "str"),
          "messages": ("obj", "list")}
SPILL_BLOCK = 8192


class PoolTableBuilder:
    """Builds a pool's table a block of rows at a time, so a large pool's text goes to disk as
    it is read and is never all in memory."""

    def __init__(self, schema: str, fields: dict[str, str], spill_rows: int | None, spill_dir: str | Path | None):
        self.spill_rows, self.spill_dir = spill_rows, spill_dir
        self.store: Any = None
        skip = {"conversations"} if schema == "sharegpt" else {"messages"} if schema == "messages" else set()
        skip |= {fields.get(k, k) for k in ("instruction", "input", "output")} if schema == "alpaca" else set()
        self.skip = skip
        self.cols: dict[str, ColumnBuilder] = {k: ColumnBuilder("str", kind) for k, kind in _LIGHT.items()}
        self.cols.update({k: ColumnBuilder(codec, kind) for k, (codec, kind) in _HEAVY.items()})
        self.cols["_record"] = ColumnBuilder("obj", "any")
        self.extra: dict[str, str] = {}  # record field → column name, in order of first appearance
        self.positions = array("q")
        self.rows: list[dict[str, Any]] = []
        self.records: list[Any] = []
        self.n = 0

    def add(self, base: dict[str, Any], rec: Any, row: int) -> None:
        self.rows.append(base)
        self.records.append(rec)
        self.positions.append(row)
        if len(self.rows) >= SPILL_BLOCK:
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        for k in (*_LIGHT, *_HEAVY):
            self.cols[k].extend([r[k] for r in self.rows])
        for rec in self.records:  # a field first seen now is None in the rows before it
            for k in rec:
                if k not in self.skip and k not in self.extra:
                    name = "field_" + k if k in BASE or k.startswith("_") else k
                    self.extra[k] = name
                    self.cols[name] = col = ColumnBuilder("obj", None)
                    if self.n:
                        col.extend([None] * self.n)
                        if self.store is not None:
                            col.spill(self.store, name)
        for k, name in self.extra.items():
            self.cols[name].extend([rec.get(k) for rec in self.records])
        self.cols["_record"].extend(self.records)
        self.n += len(self.rows)
        self.rows, self.records = [], []
        if self.store is None and self.spill_rows is not None and self.n > self.spill_rows:
            self.store = ArrowStore(spill=True, root=self.spill_dir)
            for name, col in self.cols.items():
                if name not in _LIGHT:
                    col.spill(self.store, name)

    def finish(self, meta: dict[str, Any]) -> Table:
        self._flush()
        if self.store is not None:
            self.store.finish()
        cols = {k: self.cols[k].finish() for k in ("id", "instruction", "input", "output", "messages", "n_turns")}
        cols["id"] = compact_ids(cols["id"])
        for name in self.extra.values():
            cols[name] = self.cols[name].finish()
        cols["_row"] = np.frombuffer(self.positions, dtype=np.int64).copy()
        cols["_record"] = self.cols["_record"].finish()
        return Table(cols, meta)
