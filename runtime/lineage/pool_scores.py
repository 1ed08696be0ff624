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
from dslrun.runtime.data.lazy_column import LazyColumn, slice_rows, take_rows, values_of
from dslrun.runtime.data.table import as_column
from dslrun.runtime.lineage.reasons import reasons_for
from dslrun.runtime.lineage.score_columns import Codes, ScoreColumn

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
                self.pools = Codes.constant(loads[0], len(rows))
                if increasing and rows[-1] == len(rows) - 1:  # rows 0..n-1 (nothing quarantined): row is position
                    self.by_row = rows
                    return
                self.by_row = np.full(int(rows.max()) + 1, -1, dtype=np.int64)
                self.by_row[rows] = np.arange(len(rows))
                return
            if not len(rows):
                self.ids, self.rows, self.pools = np.zeros(0, dtype=object), rows, Codes.constant("", 0)
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
        self.pools = Codes.of(pools)

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
        same[found] = equal_ids(take_rows(self.ids, pos[found]), take_rows(t.stored("id"), found))
        pos[~same] = -1
        return pos

    def id_arrow(self, lo: int, hi: int) -> Any:
        import pyarrow as pa

        part = slice_rows(self.ids, lo, hi)
        held = part.arrow() if isinstance(part, LazyColumn) else None
        if held is not None:
            return held
        return pa.array(values_of(part), type=pa.string(), from_pandas=True)


def build(plan: Any, tables: dict[str, Any]) -> dict[str, Any]:
    index = _Index(plan, tables)
    n = len(index)
    scores: dict[str, ScoreColumn] = {}
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
                col = scores[c] = ScoreColumn.adopt(stored, t.dtype(c))
            else:
                values = t.column(c)
                col = scores.setdefault(c, ScoreColumn(n, values.dtype))
                col.put(pos[ok], values if ok.all() else values[ok])
            col.last = (id(stored), row_id)
    targets = [t for t in _targets(plan) if t in tables]
    kept = np.zeros(n, dtype=bool)
    for t in targets:
        pos = positions[t]
        kept[pos[pos >= 0]] = True
    dropped = np.zeros(n, dtype=bool)
    dropped_by = Codes.empty(n)
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
        if isinstance(v, ScoreColumn):
            return v.arrow(lo, hi)
        return pa.array(v[lo:hi], type=fixed[c], from_pandas=True)

    # A free-form column is converted whole (its type depends on every value); the rest a row
    # group at a time, so a pool of millions never holds all of it in Arrow and numpy at once.
    whole = {c: _free_form(v.output()) for c, v in data.items() if isinstance(v, ScoreColumn) and not v.numbers()}
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
