"""Running an LLM operator: chat calls through the API pool, every reply cached as it lands.

Cached samples cost nothing. The rest become one request each; the pool sends them
concurrently within the endpoint's rate limits, retries what is worth retrying and
stops at the node's budget. Each outcome is written to the score cache the moment it
is known (in its own transaction), so a run killed halfway resumes without paying
for an answered sample again. Paid replies are cached even when they do not parse
(with their failure reason); samples with no reply (retries ran out, budget) get a
reason in the table and the run summary and are asked again on the next run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from dslrun.core.keys import cache_params, node_fingerprint, rename, stored_names
from dslrun.operators.llm.base import LlmOperator
from dslrun.runtime.data.table import Table
from dslrun.runtime.execution.context import RunContext
from dslrun.runtime.execution.sample_runner import assemble, unique_first

SendFn = Callable[[LlmOperator, list, RunContext, Callable[[Any], None]], Any]


def local_requests(op: LlmOperator, requests: list, ctx: RunContext, on_result: Callable[[Any], None]) -> Any:
    """Send the requests from this process through the API pool; return its summary."""
    from dslrun.runtime.api.connect import backend_for, pool_for

    backend = backend_for(op.llm, op.model_name, ctx.models, op.env_vars().get("api_key_env"))
    return pool_for(op.llm, backend).run_sync(requests, backend, on_result, parse=op.parse)


def run_llm_op(op: LlmOperator, table: Table, ctx: RunContext, send: SendFn = local_requests) -> Table:
    """``send`` runs the requests (here, or on a Ray actor) and calls ``on_result`` per outcome
    in this process, which is the only writer of the cache. A dry run (``dslrun plan``)
    sends nothing: with every sample cached it gives what a run gives (``finish`` included,
    so derived columns such as ``n_tags`` are there); otherwise the table comes back as it
    was and the missing samples are counted in ``ctx.stats.pending``."""
    from dslrun.runtime.api import ApiRequest

    ids = table.ids
    uniq, first_rows = unique_first(ids)
    fp = node_fingerprint(op)
    results: dict[str, Any] = {}
    stored = stored_names(op)
    back = {s: c for c, s in stored.items()}
    if ctx.cache is not None:
        ctx.cache.register(fp, op.name, op.version, cache_params(op), op.model_identity())
        results = {sid: rename(v, back) for sid, v in ctx.cache.get_many(fp, uniq).items()}
    missing = [r for sid, r in zip(uniq, first_rows) if sid not in results]
    ctx.stats.cache_hits += len(uniq) - len(missing)
    ctx.stats.cache_misses += len(missing)
    if missing and ctx.dry_run:  # `dslrun plan` pays for nothing
        ctx.stats.pending += len(missing)
        return table
    if missing:
        columns = ("instruction", "input", "output")
        cols = {c: table.column(c) for c in columns}
        opts = op.request_options()
        requests = [ApiRequest(str(ids[r]), op.messages({c: cols[c][r] for c in columns}), opts) for r in missing]
        task = ctx.progress.task(ctx.node, len(missing)) if ctx.progress else None
        lock = threading.Lock()

        def on_result(result: Any) -> None:
            values, keep = op.row(result)
            if keep and ctx.cache is not None:
                ctx.cache.put_many(fp, [(result.key, rename(values, stored))])
            with lock:
                results[result.key] = values
                if keep:
                    ctx.stats.computed += 1
                else:
                    ctx.stats.failed += 1
            if task is not None:
                task.advance(1)

        summary = send(op, requests, ctx, on_result)
        if task is not None:
            task.done()
        ctx.stats.notes.append(f"api: {summary}")
    return op.finish(table.with_columns(assemble(op, ids, results, table)), ctx)
