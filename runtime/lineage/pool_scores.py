"""``pool.scores.parquet``: every loaded sample, its scores, whether it was kept, and if not, why.

Columns: ``id``, ``row`` (position in its pool file), ``pool`` (the ``load`` step), every
score column any step computed (null where a step never saw the sample), ``kept`` (in
what a ``save`` step wrote), ``dropped_by`` (the first step, in run order, on the way to a
``save`` that removed it) and ``drop_reason``. A failed score (``*_reason`` set, e.g. an
unparsable judge reply) is added to the reason of the step that then dropped the row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from dslrun.runtime.data.arrow_records import text_if_mixed
from dslrun.runtime.data.id_column import equal_ids
from dslrun.runtime.data.lazy_column import LazyColumn
from dslrun.runtime.data.table import as_column
from dslrun.runtime.lineage.reasons import reasons_for

NAME = "pool.scores.parquet"
TEXT = {"instruction", "input", "output", "messages"}


def _targets(plan: Any) -> list[str]:
    saves = [n for n in plan.order if plan.nodes[n].step.op == "save"]
    return saves or [n for n in plan.order if plan.graph.out_degree(n) == 0]


def _keys(t: Any) -> list[tuple[str, int]]:
    """A row's identity: its sample id and its row in the pool file (exact duplicates share an id)."""
    rows = t.column("_row").tolist() if "_row" in t else [-1] * len(t)
    return list(zip(t.ids.tolist(), (int(r) for r in rows)))


def _take(stored: Any, idx: np.ndarray) -> Any:
    return stored.take(idx) if isinstance(stored, LazyColumn) else stored[idx]


class _Index:
    """Where each loaded row is in the output (its position), found for any table's rows.

    With one ``load`` (the usual case) a row's position in the pool file identifies it, so
    the lookup is an array indexed by ``_row`` (checked against the id); with several, rows
    are looked up by (id, row) in a dict. Vectorised because a pool has millions of rows
    and every step's table is looked up; a table that holds the pool's own ``_row`` and ids
    (a step that kept every row in order) shares one array of positions."""

    def __init__(self, plan: Any, tables: dict[str, Any]):
        loads = [n for n in plan.order if plan.nodes[n].step.op == "load" and n in tables]
        self.by_row: np.ndarray | None = None
        self.pool: Any = None
        self.all: np.ndarray | None = None  # 0..n-1: the positions of a table of every row in order
        if len(loads) == 1 and "_row" in tables[loads[0]]:
            t = tables[loads[0]]
            rows = np.asarray(t.column("_row"), dtype=np.int64)
            increasing = bool(np.all(rows[1:] > rows[:-1]))  # as readers number rows: unique
            if len(rows) and rows.min() >= 0 and (increasing or len(np.unique(rows)) == len(rows)):
                self.pool, self.ids, self.rows = t, t.stored("id"), rows
                self.pools = _Codes.constant(loads[0], len(rows))
                if increasing and rows[-1] == len(rows) - 1:  # rows 0..n-1 (nothing quarantined): row is position
                    self.by_row = rows
                    return
                self.by_row = np.full(int(rows.max()) + 1, -1, dtype=np.int64)
                self.by_row[rows] = np.arange(len(rows))
                return
            if not len(rows):
                self.ids, self.rows, self.pools = np.zeros(0, dtype=object), rows, _Codes.constant("", 0)
                self.by_row = np.zeros(0, dtype=np.int64)
                return
        keys: list[tuple[str, int]] = []
        pools = []
        self.index: dict[tuple[str, int], int] = {}
        for name in loads:
            for key in _keys(tables[name]):
                if key not in self.index:
                    self.index[key] = len(keys)
                    keys.append(key)
                    pools.append(name)
        self.ids = np.array([k[0] for k in keys], dtype=object)
        self.rows = np.array([k[1] for k in keys], dtype=np.int64)
        self.pools = _Codes.of(pools)

    def __len__(self) -> int:
        return len(self.rows)

    def every_row(self) -> np.ndarray:
        if self.all is None:
            self.all = np.arange(len(self), dtype=np.int64)
        return self.all

    def positions(self, t: Any) -> np.ndarray:
        """The output position of each of ``t``'s rows; -1 for a row of no loaded pool."""
        if self.by_row is None:
            return np.fromiter((self.index.get(k, -1) for k in _keys(t)), dtype=np.int64, count=len(t))
        if not len(t) or "_row" not in t:
            return np.full(len(t), -1, dtype=np.int64)
        pool = self.pool
        if pool is not None and t.stored("_row") is pool.stored("_row") and t.stored("id") is pool.stored("id"):
            return self.every_row()
        pos = np.full(len(t), -1, dtype=np.int64)
        rows = np.asarray(t.column("_row"), dtype=np.int64)
        inside = (rows >= 0) & (rows < len(self.by_row))
        pos[inside] = rows[inside] if self.by_row is self.rows else self.by_row[rows[inside]]
        found = np.flatnonzero(pos >= 0)
        same = np.zeros(len(t), dtype=bool)
        same[found] = equal_ids(_take(self.ids, pos[found]), _take(t.stored("id"), found))
        pos[~same] = -1
        return pos

    def id_arrow(self, lo: int, hi: int) -> Any:
        import pyarrow as pa

        part = self.ids.slice(lo, hi) if isinstance(self.ids, LazyColumn) else self.ids[lo:hi]
        held = part.arrow() if isinstance(part, LazyColumn) else None
        if held is not None:
            return held
        return pa.array(part.values() if isinstance(part, LazyColumn) else part, type=pa.string(), from_pandas=True)


class _Codes:
    """A text column of a few distinct values (step and pool names) as small integer codes; -1: none."""

    def __init__(self, names: list[str], codes: np.ndarray):
        self.names, self.codes = names, codes

    @classmethod
    def constant(cls, name: str, n: int) -> _Codes:
        return cls([name], np.broadcast_to(np.int16(0), (n,)))

    @classmethod
    def of(cls, values: list[str]) -> _Codes:
        names = list(dict.fromkeys(values))
        code = {v: i for i, v in enumerate(names)}
        return cls(names, np.fromiter((code[v] for v in values), np.int16, len(values)))

    @classmethod
    def empty(cls, n: int) -> _Codes:
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


class _Column:
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
    def adopt(cls, stored: Any, dtype: np.dtype) -> _Column:
        col = cls(0, dtype)
        col.source, col._valid = stored, None
        return col

    @property
    def values(self) -> np.ndarray:
        if self.source is not None:
            src = self.source.values() if isinstance(self.source, LazyColumn) else self.source
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
            current = _take(self.source, at)
            current = current.values() if isinstance(current, LazyColumn) else current
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
            part = self.source.slice(lo, hi) if isinstance(self.source, LazyColumn) else self.source[lo:hi]
            values = part.values() if isinstance(part, LazyColumn) else part
            return pa.array(values, mask=np.zeros(len(values), dtype=bool), from_pandas=True)  # NaN: null
        assert self._valid is not None
        return pa.array(self._values[lo:hi], mask=~self._valid[lo:hi], from_pandas=True)

    def output(self) -> list[Any]:
        """Free-form values (``numbers()`` is false): a list with None where a sample has none."""
        return [v if ok else None for v, ok in zip(self.values.tolist(), self.valid.tolist())]


def build(plan: Any, tables: dict[str, Any]) -> dict[str, Any]:
    index = _Index(plan, tables)
    n = len(index)
    scores: dict[str, _Column] = {}
    positions: dict[str, np.ndarray] = {}
    for name in plan.order:
        t = tables.get(name)
        if t is None:
            continue
        pos = positions[name] = index.positions(t)
        ok = pos >= 0
        whole = len(pos) == n and (pos is index.all or (bool(ok.all()) and np.array_equal(pos, index.every_row())))
        row_id = id(t.stored("_row")) if "_row" in t else 0
        for c in t.column_names:
            if c in TEXT or c == "id" or t.ndim(c) != 1:
                continue
            stored = t.stored(c)
            col = scores.get(c)
            if col is not None and col.last == (id(stored), row_id):
                continue  # the same array of the same rows, passed on by a later step: put already
            if col is None and whole:
                col = scores[c] = _Column.adopt(stored, t.dtype(c))
            else:
                values = t.column(c)
                col = scores.setdefault(c, _Column(n, values.dtype))
                col.put(pos[ok], values if ok.all() else values[ok])
            col.last = (id(stored), row_id)
    targets = [t for t in _targets(plan) if t in tables]
    kept = np.zeros(n, dtype=bool)
    for t in targets:
        pos = positions[t]
        kept[pos[pos >= 0]] = True
    dropped = np.zeros(n, dtype=bool)
    dropped_by = _Codes.empty(n)
    reason = np.full(n, None, dtype=object)
    ancestors = set(targets).union(*(nx.ancestors(plan.graph, t) for t in targets)) if targets else set()
    failures = {c: v for c, v in scores.items() if c.endswith("_reason")}
    failed_rows = np.zeros(n, dtype=bool)
    for col in failures.values():
        failed_rows |= col.valid & np.fromiter((isinstance(v, str) and v != "" for v in col.values.tolist()), bool, n)
    for name in plan.order:
        node = plan.nodes[name]
        if name not in ancestors or not node.inputs or name not in tables or node.op is None:
            continue
        inputs = [tables[i] for i in node.inputs if i in tables]
        if len(inputs) != len(node.inputs):
            continue
        out = positions[name]
        first = positions[node.inputs[0]]
        if out is first:  # every row in, every row out
            continue
        in_output = np.zeros(n, dtype=bool)
        in_output[out[out >= 0]] = True
        known = first >= 0
        cand = np.zeros(len(first), dtype=bool)
        p_known = first[known]
        cand[known] = ~in_output[p_known] & ~kept[p_known] & ~dropped[p_known]
        lost = np.flatnonzero(cand)
        if not len(lost):
            continue
        why = reasons_for(node.op, inputs, tables[name], lost)
        at = first[lost]
        dropped_by.set(at, name)
        dropped[at] = True
        reason[at] = why if isinstance(why, np.ndarray) else as_column(why, "any")
        for p in at[failed_rows[at]].tolist():  # where a score failed, its reasons are added
            failed = [f"{c}: {col[p]}" for c, col in failures.items() if isinstance(col[p], str) and col[p]]
            if failed:
                reason[p] = reason[p] + "; its score failed (" + "; ".join(failed) + ")"
    return {"id": index, "row": index.rows, "pool": index.pools, **scores,
            "kept": kept, "dropped_by": dropped_by, "drop_reason": reason}


def path_steps(plan: Any, tables: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps on the way to the outputs, in run order, with the columns each added (for ``dslrun why``)."""
    targets = [t for t in _targets(plan) if t in tables]
    on_path = set(targets).union(*(nx.ancestors(plan.graph, t) for t in targets)) if targets else set()
    steps = []
    for name in plan.order:
        if name not in on_path or name not in tables:
            continue
        node = plan.nodes[name]
        before = set().union(*(tables[i].column_names for i in node.inputs if i in tables))
        steps.append({"name": name, "op": node.step.op, "inputs": list(node.inputs),
                      "columns": [c for c in tables[name].column_names if c not in before and c not in TEXT]})
    return steps


ROW_GROUP = 1024 * 1024  # rows converted to Arrow and written at a time (Parquet's default row group)


def write(plan: Any, tables: dict[str, Any], out_dir: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dslrun.runtime.data.pool_files import atomic_write

    data = build(plan, tables)
    index: _Index = data["id"]
    n = len(index)
    fixed = {"id": pa.string(), "row": pa.int64(), "pool": pa.string(), "kept": pa.bool_(),
             "dropped_by": pa.string(), "drop_reason": pa.string()}

    def part(c: str, v: Any, lo: int, hi: int) -> Any:
        if c == "id":
            return index.id_arrow(lo, hi)
        if isinstance(v, _Column):
            return v.arrow(lo, hi)
        return pa.array(v[lo:hi], type=fixed[c], from_pandas=True)

    # A free-form column is converted whole (its type depends on every value); the rest a row
    # group at a time, so a pool of millions never holds all of it in Arrow and numpy at once.
    whole = {c: _free_form(v.output()) for c, v in data.items() if isinstance(v, _Column) and not v.numbers()}
    types = {c: fixed[c] if c in fixed else whole[c].type if c in whole else part(c, v, 0, 0).type
             for c, v in data.items()}
    meta = {b"dslrun.steps": json.dumps(path_steps(plan, tables)).encode()}
    schema = pa.schema([(c, t) for c, t in types.items()]).with_metadata(meta)

    def parquet(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema) as writer:
            for lo in range(0, n, ROW_GROUP):  # no rows: a file with the schema and no row group
                hi = min(lo + ROW_GROUP, n)
                arrays = [whole[c].slice(lo, hi - lo) if c in whole else part(c, v, lo, hi) for c, v in data.items()]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))

    path = out_dir / NAME
    atomic_write(path, parquet)
    return path


def _free_form(values: list[Any]) -> Any:
    import pyarrow as pa

    arr = text_if_mixed(values, from_pandas=True)  # NaN: null
    if arr.type == pa.null():  # no sample has a value (all failed): say what it would have been
        floats = any(isinstance(v, float) for v in values)
        arr = pa.nulls(len(values), pa.float64() if floats else pa.string())
    return arr
