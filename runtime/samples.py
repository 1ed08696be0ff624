"""Running a per-sample operator through the score cache.

The runtime, not the operator, decides the batches: each batch is computed
and committed to the cache in one transaction, so a killed run resumes at the
first uncommitted batch and never pays for a committed sample twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from dslrun.operators.base import FieldKind, SampleOperator, field_kind
from dslrun.runtime.cache import fingerprint
from dslrun.runtime.context import RunContext
from dslrun.runtime.table import Table, as_column

CPU_BATCH = 2048


class NoCache:
    """Marks a Params field that changes how, not what, is computed (kept out of cache keys)."""


def cache_params(op: SampleOperator) -> dict[str, Any]:
    params = op.params
    out = {}
    for name, f in type(params).model_fields.items():
        if any(isinstance(m, NoCache) or m is NoCache for m in f.metadata):
            continue
        if field_kind(type(params), name) == FieldKind.OUTPUT_PATH:
            continue
        out[name] = params.model_dump(mode="json", include={name})[name]
    return out


def node_fingerprint(op: SampleOperator) -> str:
    return fingerprint(op.name, op.version, cache_params(op), op.model_identity())


def unique_first(ids: np.ndarray) -> tuple[list[str], list[int]]:
    """Distinct ids in order of first appearance, and the row of each first appearance."""
    seen: dict[str, int] = {}
    for i, sid in enumerate(ids):
        if sid not in seen:
            seen[sid] = i
    return list(seen), list(seen.values())


def batch_size(op: SampleOperator, ctx: RunContext) -> int:
    return int(ctx.settings.get("batch_rows", {}).get(op.name, ctx.settings.get("cpu_batch", CPU_BATCH)))


def run_sample_op(op: SampleOperator, table: Table, ctx: RunContext) -> Table:
    ids = table.ids
    uniq, first_rows = unique_first(ids)
    fp = node_fingerprint(op)
    results: dict[str, Any] = {}
    if op.cacheable and ctx.cache is not None:
        ctx.cache.register(fp, op.name, op.version, cache_params(op), op.model_identity())
        results = ctx.cache.get_many(fp, uniq)
    missing = [r for sid, r in zip(uniq, first_rows) if sid not in results]
    ctx.stats.cache_hits = len(uniq) - len(missing)
    ctx.stats.cache_misses = len(missing)
    size = max(1, batch_size(op, ctx))
    task = ctx.progress.task(ctx.node, len(missing)) if ctx.progress and missing else None
    for start in range(0, len(missing), size):
        rows = missing[start:start + size]
        batch = table.take(rows)
        computed = op.compute(batch, ctx)
        if len(computed) != len(rows):
            raise RuntimeError(f"{op.name} returned {len(computed)} results for {len(rows)} samples")
        pairs = list(zip(batch.ids, (dict(c) for c in computed)))
        if op.cacheable and ctx.cache is not None:
            ctx.cache.put_many(fp, pairs)
        results.update(pairs)
        ctx.stats.computed += len(rows)
        if task is not None:
            task.advance(len(rows))
    if task is not None:
        task.done()
    return table.with_columns(assemble(op, ids, results, table))


def produced_columns(op: SampleOperator) -> dict[str, str]:
    """The columns this operator adds, with their types."""
    return op.output_columns([{}])


def assemble(op: SampleOperator, ids: np.ndarray, results: dict[str, Any], table: Table) -> dict[str, np.ndarray]:
    return {c: as_column([results[sid].get(c) for sid in ids], kind) for c, kind in produced_columns(op).items()}
