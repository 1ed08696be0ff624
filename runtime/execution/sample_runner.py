"""Running a per-sample operator through the score cache.

The runtime, not the operator, decides the batches: each batch is computed
and committed to the cache in one transaction, so a killed run resumes at the
first uncommitted batch and never pays for a committed sample twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from dslrun.core.cost import Resource
from dslrun.core.keys import cache_params, node_fingerprint, rename, stored_names
from dslrun.operators.base import SampleOperator
from dslrun.runtime.cache.claims import share
from dslrun.runtime.data.table import Table, as_column
from dslrun.runtime.execution.context import RunContext
from dslrun.runtime.models.resident import is_oom

# One computed batch: the sample ids and one result mapping per id.
Computed = tuple[Sequence[str], list]
ComputeFn = Callable[[SampleOperator, Table, list[list[int]], RunContext], Iterator[Computed]]


def unique_first(ids: np.ndarray) -> tuple[list[str], list[int]]:
    """Distinct ids in order of first appearance, and the row of each first appearance."""
    seen: dict[str, int] = {}
    for i, sid in enumerate(ids):
        if sid not in seen:
            seen[sid] = i
    return list(seen), list(seen.values())


def batch_size(op: SampleOperator, ctx: RunContext) -> int:
    return ctx.settings.batch_rows


LOOKUP_ROWS = 50_000  # ids looked up in the cache (or text lengths read) at a time


def plan_batches(op: SampleOperator, table: Table, rows: list[int], ctx: RunContext) -> list[list[int]]:
    """Rows to compute, cut into batches.

    Model operators get length bucketing: rows sorted by estimated length, then
    packed so rows × longest ≤ the token budget — little padding, bounded memory.
    Token counts are estimated from characters (≈ 4 per token), which is enough
    to pack by; results do not depend on how rows are batched.
    """
    if op.resource != Resource.MODEL:
        size = max(1, batch_size(op, ctx))
        return [rows[i:i + size] for i in range(0, len(rows), size)]
    budget, cap = ctx.settings.token_budget, ctx.settings.model_batch_rows
    text = text_chars(table, rows)
    est = {r: max(8, n // 4 + 8) for r, n in zip(rows, text)}
    ordered = sorted(rows, key=lambda r: est[r])
    batches: list[list[int]] = []
    current: list[int] = []
    for r in ordered:
        if current and (len(current) + 1) * est[r] > budget or len(current) >= cap:
            batches.append(current)
            current = []
        current.append(r)
    if current:
        batches.append(current)
    return batches


def text_chars(table: Table, rows: list[int], block: int = LOOKUP_ROWS) -> list[int]:
    """Characters of instruction + input + output per row, a block of rows at a time (a large
    pool's text is on disk; this reads each value once and holds one block)."""
    out: list[int] = []
    for i in range(0, len(rows), block):
        part = table.take(rows[i:i + block])
        cols = [part.column(c) for c in ("instruction", "input", "output")]
        out.extend(len(a) + len(b) + len(c) for a, b, c in zip(*cols))
    return out


def compute_with_split(op: SampleOperator, batch: Table, ctx: RunContext) -> list:
    """Compute a batch; on out-of-memory, split it in half and retry each half."""
    try:
        return list(op.compute(batch, ctx))
    except Exception as e:
        if not is_oom(e) or len(batch) == 1:
            raise
        ctx.stats.notes.append(f"out of memory on {len(batch)} rows; split and retried")
        _free_cuda()
        half = len(batch) // 2
        return compute_with_split(op, batch.slice(0, half), ctx) + compute_with_split(op, batch.slice(half, len(batch)), ctx)


def _free_cuda() -> None:
    try:
        import torch

        torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - only meaningful on GPUs
        pass


def local_batches(op: SampleOperator, table: Table, batches: list[list[int]], ctx: RunContext) -> Iterator[Computed]:
    """Compute batches in this process, in order."""
    for rows in batches:
        batch = table.take(rows)
        yield batch.ids, compute_with_split(op, batch, ctx)



class Collected:
    """Results per produced column, one slot per distinct sample id.

    Numbers go straight into numpy buffers, not a dict or a list of Python objects per
    sample: on a 1M-row pool those cost ~0.5 GiB more, and the driver's memory is what a
    large pool runs into first.
    """

    def __init__(self, op: SampleOperator, uniq: list[str]):
        self.pos = {sid: i for i, sid in enumerate(uniq)}
        self.kinds = produced_columns(op)
        self.cols = {c: _Slots(kind, len(uniq)) for c, kind in self.kinds.items()}
        self.have = np.zeros(len(uniq), dtype=bool)

    def add(self, pairs: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        pairs = list(pairs)
        if not pairs:
            return
        at = np.fromiter((self.pos[sid] for sid, _ in pairs), dtype=np.int64, count=len(pairs))
        self.have[at] = True
        for c, slots in self.cols.items():
            slots.put(at, [value.get(c) for _, value in pairs])

    def columns(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        rows = np.fromiter((self.pos[sid] for sid in ids), dtype=np.int64, count=len(ids))
        return {c: slots.column(rows) for c, slots in self.cols.items()}


class _Slots:
    """One produced column's values by slot; ``column`` gives what ``as_column(values, kind)``
    gives for the same values (None in a number column: NaN, or an object array for bool)."""

    DTYPES = {"int": np.int64, "float": np.float64, "bool": bool}

    def __init__(self, kind: str, n: int):
        self.kind = kind
        dtype = self.DTYPES.get(kind)
        self.buf: Any = np.zeros(n, dtype=dtype) if dtype is not None else [None] * n
        self.none = np.ones(n, dtype=bool) if dtype is not None else None

    def put(self, at: np.ndarray, values: list[Any]) -> None:
        if self.none is None:
            for i, v in zip(at.tolist(), values):
                self.buf[i] = v
            return
        missing = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
        self.none[at] = missing
        if missing.any():
            at, values = at[~missing], [v for v in values if v is not None]
        if len(values):
            self.buf[at] = np.asarray(values, dtype=self.buf.dtype)

    def column(self, rows: np.ndarray) -> np.ndarray:
        if self.none is None:
            return as_column([self.buf[r] for r in rows.tolist()], self.kind)
        values, none = self.buf[rows], self.none[rows]
        if not none.any():
            return values
        return as_column([None if n else v for v, n in zip(values.tolist(), none.tolist())], self.kind)


def run_sample_op(op: SampleOperator, table: Table, ctx: RunContext,
                  compute: ComputeFn = local_batches, prepare: Callable[[], None] | None = None) -> Table:
    """Look up the cache, compute the missing samples batch by batch, commit each batch.

    ``compute`` yields (ids, results) per batch in any order, as batches finish; this
    process is the only writer of the cache whichever engine computes them. ``prepare``
    (shared work the batches need) runs once, before the first batch, only if there is
    one. Statistics are added to ``ctx.stats``, so a step that runs several operators
    through here reports them all. In a dry run (``dslrun plan``) only cheap operators
    compute; otherwise missing samples are counted in ``ctx.stats.pending`` and the
    table comes back without the operator's columns.
    """
    ids = table.ids
    uniq, first_rows = unique_first(ids)
    fp = node_fingerprint(op)
    got = Collected(op, uniq)
    stored = stored_names(op)
    back = {s: c for c, s in stored.items()}
    if op.cacheable and ctx.cache is not None:
        ctx.cache.register(fp, op.name, op.version, cache_params(op), op.model_identity())
        for i in range(0, len(uniq), LOOKUP_ROWS):
            got.add((sid, rename(v, back)) for sid, v in ctx.cache.get_many(fp, uniq[i:i + LOOKUP_ROWS]).items())
    missing = [r for k, r in enumerate(first_rows) if not got.have[k]]
    ctx.stats.cache_hits += len(uniq) - len(missing)
    ctx.stats.cache_misses += len(missing)
    if missing and ctx.dry_run and op.resource != Resource.CPU:
        ctx.stats.pending += len(missing)
        return table
    if missing and prepare is not None:
        prepare()
    task = (ctx.progress.task(ctx.node, len(missing), cached=len(uniq) - len(missing))
            if ctx.progress and missing else None)
    store = ctx.cache if op.cacheable else None
    from dslrun.runtime.execution.interrupt import CONTROLLER

    def commit(batch_ids: Sequence[str], computed: list) -> None:
        if len(computed) != len(batch_ids):
            raise RuntimeError(f"{op.name} returned {len(computed)} results for {len(batch_ids)} samples")
        pairs = list(zip((str(i) for i in batch_ids), (dict(c) for c in computed)))
        if store is not None:
            store.put_many(fp, [(sid, rename(v, stored)) for sid, v in pairs])
        got.add(pairs)
        ctx.stats.computed += len(pairs)
        if task is not None:
            task.advance(len(pairs))
        CONTROLLER.check()  # Ctrl-C: this batch is committed; compute no more

    if store is None or op.resource == Resource.CPU or not missing:
        # cheap operators are not claimed: a claim costs about what computing them does
        for batch_ids, computed in compute(op, table, plan_batches(op, table, missing, ctx), ctx):
            commit(batch_ids, computed)
    else:
        _shared(op, table, ctx, compute, store, fp, missing, commit, got, task, back)
    if task is not None:
        task.done()
    return table.with_columns(got.columns(ids))


def _shared(op: SampleOperator, table: Table, ctx: RunContext, compute: ComputeFn, store: Any, fp: str,
            missing: list[int], commit: Callable[[Sequence[str], list], None], got: Collected, task: Any,
            back: dict[str, str]) -> None:
    """Compute ``missing`` once across runs sharing the store: claim, compute, wait for the rest.

    Computed here, batches are claimed one at a time, so two runs split a node's work; an
    engine computing elsewhere gets all its claimable rows at once (it keeps its replicas busy)."""
    row_of = {str(table.ids[r]): r for r in missing}
    one_by_one = compute is local_batches

    def groups(pending: list[str]) -> list[list[str]]:
        if not one_by_one:
            return [pending]
        return [[str(table.ids[r]) for r in b] for b in plan_batches(op, table, [row_of[i] for i in pending], ctx)]

    def work(mine: list[str]) -> None:
        for batch_ids, computed in compute(op, table, plan_batches(op, table, [row_of[i] for i in mine], ctx), ctx):
            commit(batch_ids, computed)

    def collect(values: dict[str, Any]) -> None:
        got.add((sid, rename(v, back)) for sid, v in values.items())
        if task is not None:
            task.advance(len(values))

    waited = share(store, fp, list(row_of), groups, work, collect, label=ctx.node)
    if waited:
        ctx.stats.notes.append(f"{waited} samples were computed by another run sharing the cache")


def produced_columns(op: SampleOperator) -> dict[str, str]:
    """The columns this operator adds, with their types."""
    return op.output_columns([{}])


def assemble(op: SampleOperator, ids: np.ndarray, results: dict[str, Any], table: Table) -> dict[str, np.ndarray]:
    return {c: as_column([results[sid].get(c) for sid in ids], kind) for c, kind in produced_columns(op).items()}
