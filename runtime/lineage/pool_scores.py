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


class _Index:
    """Where each loaded row is in the output (its position), found for any table's rows.

    With one ``load`` (the usual case) a row's position in the pool file identifies it, so
    the lookup is an array indexed by ``_row`` (checked against the id); with several, rows
    are looked up by (id, row) in a dict. Vectorised because a pool has millions of rows
    and every step's table is looked up."""

    def __init__(self, plan: Any, tables: dict[str, Any]):
        loads = [n for n in plan.order if plan.nodes[n].step.op == "load" and n in tables]
        self.by_row: np.ndarray | None = None
        if len(loads) == 1 and "_row" in tables[loads[0]]:
            t = tables[loads[0]]
            rows = np.asarray(t.column("_row"), dtype=np.int64)
            if len(rows) and rows.min() >= 0 and len(np.unique(rows)) == len(rows):
                self.ids = np.asarray(t.ids, dtype=object)
                self.rows = rows
                self.by_row = np.full(int(rows.max()) + 1, -1, dtype=np.int64)
                self.by_row[rows] = np.arange(len(rows))
                self.pools = [loads[0]] * len(rows)
                return
            if not len(rows):
                self.ids, self.rows, self.pools = np.zeros(0, dtype=object), rows, []
                self.by_row = np.zeros(0, dtype=np.int64)
                return
        keys: list[tuple[str, int]] = []
        self.pools = []
        self.index: dict[tuple[str, int], int] = {}
        for name in loads:
            for key in _keys(tables[name]):
                if key not in self.index:
                    self.index[key] = len(keys)
                    keys.append(key)
                    self.pools.append(name)
        self.ids = np.array([k[0] for k in keys], dtype=object)
        self.rows = np.array([k[1] for k in keys], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def positions(self, t: Any) -> np.ndarray:
        """The output position of each of ``t``'s rows; -1 for a row of no loaded pool."""
        if self.by_row is None:
            return np.fromiter((self.index.get(k, -1) for k in _keys(t)), dtype=np.int64, count=len(t))
        pos = np.full(len(t), -1, dtype=np.int64)
        if "_row" not in t or not len(t):
            return pos
        rows = np.asarray(t.column("_row"), dtype=np.int64)
        inside = (rows >= 0) & (rows < len(self.by_row))
        pos[inside] = self.by_row[rows[inside]]
        found = pos >= 0
        same = np.zeros(len(t), dtype=bool)
        same[found] = self.ids[pos[found]] == np.asarray(t.ids, dtype=object)[found]
        pos[~same] = -1
        return pos


class _Column:
    """One score column over every loaded sample: typed (numbers, with a mask of the samples
    that have a value) while every step's values are numbers, Python objects otherwise. A
    million-row pool's numbers as Python objects were most of a run's peak memory.

    A step's column that covers every sample in order is adopted, not copied (``shared``: it
    is the step's own array, copied before anything writes to it)."""

    def __init__(self, n: int, dtype: np.dtype):
        self.typed = dtype.kind in "biuf"
        self.values = np.zeros(n, dtype) if self.typed else np.full(n, None, dtype=object)
        self.valid = np.zeros(n, dtype=bool)
        self.shared = False
        self.last: tuple[int, int] | None = None  # (id of the array, id of its table's _row) put last

    @classmethod
    def adopt(cls, values: np.ndarray) -> _Column:
        col = cls(0, values.dtype)
        col.values, col.valid, col.shared = values, np.ones(len(values), dtype=bool), True
        if not col.typed:
            col.values = np.asarray(values, dtype=object)
        return col

    def put(self, at: np.ndarray, values: np.ndarray) -> None:
        if self.shared:
            self.values, self.shared = self.values.copy(), False
        if self.typed and values.dtype.kind not in "biuf":
            objects = np.full(len(self.values), None, dtype=object)
            objects[self.valid] = self.values[self.valid].astype(object)
            self.values, self.typed = objects, False
        if self.typed and values.dtype != self.values.dtype:
            self.values = self.values.astype(np.result_type(self.values.dtype, values.dtype))
        self.values[at] = values if self.typed else np.asarray(values, dtype=object)
        self.valid[at] = True

    def __getitem__(self, i: int) -> Any:
        return self.values[i] if self.valid[i] else None

    def output(self) -> Any:
        """What ``write`` turns into an Arrow array: (values, valid) while typed, else a list."""
        if self.typed and self.valid.any():
            return self.values, self.valid
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
        whole = len(pos) == n and bool(ok.all()) and bool((pos == np.arange(n)).all())
        row_id = id(t.column("_row")) if "_row" in t else 0
        for c in t.column_names:
            if c in TEXT or c == "id" or t.ndim(c) != 1:
                continue
            values = t.column(c)
            col = scores.get(c)
            if col is not None and col.last == (id(values), row_id):
                continue  # the same array of the same rows, passed on by a later step: put already
            if col is None and whole:
                col = scores[c] = _Column.adopt(values)
            else:
                col = scores.setdefault(c, _Column(n, values.dtype))
                col.put(pos[ok], values if ok.all() else values[ok])
            col.last = (id(values), row_id)
    targets = [t for t in _targets(plan) if t in tables]
    kept = np.zeros(n, dtype=bool)
    for t in targets:
        pos = positions[t]
        kept[pos[pos >= 0]] = True
    dropped = np.zeros(n, dtype=bool)
    dropped_by = np.full(n, None, dtype=object)
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
        in_output = np.zeros(n, dtype=bool)
        in_output[out[out >= 0]] = True
        first = positions[node.inputs[0]]
        known = first >= 0
        cand = np.zeros(len(first), dtype=bool)
        p_known = first[known]
        cand[known] = ~in_output[p_known] & ~kept[p_known] & ~dropped[p_known]
        lost = np.flatnonzero(cand)
        if not len(lost):
            continue
        why = reasons_for(node.op, inputs, tables[name], lost)
        at = first[lost]
        dropped_by[at], dropped[at] = name, True
        reason[at] = why if isinstance(why, np.ndarray) else as_column(why, "any")
        for p in at[failed_rows[at]].tolist():  # where a score failed, its reasons are added
            failed = [f"{c}: {col[p]}" for c, col in failures.items() if isinstance(col[p], str) and col[p]]
            if failed:
                reason[p] = reason[p] + "; its score failed (" + "; ".join(failed) + ")"
    return {"id": index.ids, "row": index.rows, "pool": list(index.pools),
            **{c: v.output() for c, v in scores.items()},
            "kept": kept, "dropped_by": dropped_by.tolist(), "drop_reason": reason.tolist()}


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
    n = len(data["id"])
    fixed = {"id": pa.string(), "row": pa.int64(), "pool": pa.string(), "kept": pa.bool_(),
             "dropped_by": pa.string(), "drop_reason": pa.string()}
    # A free-form column is converted whole (its type depends on every value); the rest a row
    # group at a time, so a pool of millions never holds all of it in Arrow and numpy at once.
    whole = {c: _free_form(values) for c, values in data.items() if not isinstance(values, tuple) and c not in fixed}
    types = {c: fixed[c] if c in fixed else whole[c].type if c in whole else _slice(values, 0, 0).type
             for c, values in data.items()}
    meta = {b"dslrun.steps": json.dumps(path_steps(plan, tables)).encode()}
    schema = pa.schema([(c, t) for c, t in types.items()]).with_metadata(meta)

    def parquet(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema) as writer:
            for lo in range(0, n, ROW_GROUP):  # no rows: a file with the schema and no row group
                hi = min(lo + ROW_GROUP, n)
                arrays = [whole[c].slice(lo, hi - lo) if c in whole else _slice(v, lo, hi, types[c])
                          for c, v in data.items()]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))

    path = out_dir / NAME
    atomic_write(path, parquet)
    return path


def _slice(values: Any, lo: int, hi: int, type_: Any = None) -> Any:
    import pyarrow as pa

    if isinstance(values, tuple):  # numbers and which samples have one
        return pa.array(values[0][lo:hi], mask=~values[1][lo:hi], from_pandas=True)  # NaN: null
    return pa.array(values[lo:hi], type=type_, from_pandas=True)


def _free_form(values: list[Any]) -> Any:
    import pyarrow as pa

    try:
        arr = pa.array(values, from_pandas=True)  # NaN: null
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed values in a free-form column: keep them as text
        arr = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    if arr.type == pa.null():  # no sample has a value (all failed): say what it would have been
        floats = any(isinstance(v, float) for v in values)
        arr = pa.nulls(len(values), pa.float64() if floats else pa.string())
    return arr
