"""Running an LLM operator: chat calls through the API pool, every reply cached as it lands.

Cached samples cost nothing. The rest become one request each; the pool sends them
concurrently within the endpoint's rate limits, retries what is worth retrying and
stops at the node's budget. Each outcome is written to the score cache the moment it
is known (in its own transaction), so a run killed halfway resumes without paying
for an answered sample again. Paid replies are cached even when they do not parse
(with their failure reason); samples with no reply (retries ran out, budget) get a
reason in the table and the run summary and are asked again on the next run.

The step's samples are counted by outcome (``NodeStats.outcomes``: ok, unparsable, out of
scale, failed by cause); the run decides from those whether too many failed
(``max_failed_fraction``). An error every later call would repeat (the key refused, the
model not found) stops the step at the first one: ``EndpointRefused``. A cache that cannot
be written (disk full, permissions) stops it too, keeping every paid reply in a side file
that the next run imports (``runtime/cache/unsaved.py``): ``CacheWriteFailed``.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from dslrun.core.keys import cache_params, node_fingerprint, rename, stored_names
from dslrun.operators.llm.base import LlmOperator, outcome_line, outcome_of
from dslrun.runtime.cache.claims import share
from dslrun.runtime.cache.unsaved import (
    SideFile,
    describe_write_error,
    import_unsaved,
    is_write_error,
)
from dslrun.runtime.data.table import Table
from dslrun.runtime.execution.context import RunContext
from dslrun.runtime.execution.sample_runner import assemble, unique_first

SendFn = Callable[[LlmOperator, list, RunContext, Callable[[Any], None]], Any]


class EndpointRefused(RuntimeError):
    """The endpoint answered with an error that every later call would repeat."""


class CacheWriteFailed(RuntimeError):
    """The score cache could not take a paid reply; the replies are in a side file."""


def refusal(op: LlmOperator, summary: Any) -> str:
    """What to tell the user when the pool stopped on ``summary.fatal``; names the key's
    variable, never the key (the server's message is left out for auth errors: it may quote it)."""
    url, var = op.endpoint_url(), op.env_vars().get("api_key_env", "?")
    status = f"HTTP {summary.fatal_status}" if summary.fatal_status else summary.fatal
    if summary.fatal == "auth":
        return (f"the endpoint {url} refused the API key in ${var} ({status}); check that ${var} holds a "
                f"valid key for this endpoint (or set api_key_env). No more calls were made")
    if summary.fatal == "not_found":
        said = (summary.fatal_message or "")[:200]
        return (f"the endpoint {url} answered {status} Not Found for model `{op.model_name}`; check `model` "
                f"and `base_url`. No more calls were made. The server said: {said}")
    return (f"the endpoint {url} says the account of the key in ${var} has no quota left ({status}). "
            f"No more calls were made")


def local_requests(op: LlmOperator, requests: list, ctx: RunContext, on_result: Callable[[Any], None]) -> Any:
    """Send the requests from this process through the API pool; return its summary."""
    from dslrun.runtime.api.connect import backend_for, pool_for
    from dslrun.runtime.execution.interrupt import CONTROLLER

    backend = backend_for(op.llm, op.model_name, ctx.models, op.env_vars().get("api_key_env"))
    pool = pool_for(op.llm, backend)
    with CONTROLLER.stopping(pool.stop):  # Ctrl-C: replies in flight land, nothing new is sent
        return pool.run_sync(requests, backend, on_result, parse=op.parse)


def summary_note(op: LlmOperator, s: Any) -> str:
    """The run summary's line for an LLM step; an in-process model has no API and no cost."""
    if op.llm.backend != "local":
        return f"api: {s}"
    failed = sum(getattr(s, "failed", {}).values())
    return (f"local model {op.model_name}: {s.total} samples: {s.ok} ok" + (f", {failed} failed" if failed else "")
            + f"; {s.input_tokens}+{s.output_tokens} tokens in {s.elapsed_s:.1f}s")


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
        if not ctx.dry_run:
            import_unsaved(ctx.out_dir, fp, ctx.cache.put_many)  # replies a failed write left behind
        results = {sid: rename(v, back) for sid, v in ctx.cache.get_many(fp, uniq).items()}
    missing = [r for sid, r in zip(uniq, first_rows) if sid not in results]
    ctx.stats.cache_hits += len(uniq) - len(missing)
    ctx.stats.cache_misses += len(missing)
    if missing and ctx.dry_run:  # `dslrun plan` pays for nothing
        ctx.stats.pending += len(missing)
        return table
    if missing:
        columns = op.sample_columns
        cols = {c: table.column(c) for c in columns}
        opts = op.request_options()
        requests: dict[str, Any] = {}
        parts = Parts(op)
        for r in missing:
            sid, sample = str(ids[r]), {c: cols[c][r] for c in columns}
            chats = op.calls(sample)
            if chats is None:
                requests[sid] = ApiRequest(sid, op.messages(sample), opts)
            else:
                requests.update((key, ApiRequest(key, chat, opts)) for key, chat in parts.plan(sid, chats))
        lock = threading.Lock()
        side = SideFile(ctx.out_dir)
        broken: list[BaseException] = []

        def finished(done: list[tuple[str, dict[str, Any], bool]]) -> None:
            for sid, combined, whole in done:
                results[sid] = combined
                if whole and ctx.cache is not None:
                    ctx.cache.put_many(fp, [(sid, rename(combined, stored))])

        if parts.keys:  # parts answered in an earlier run are not asked again
            cached = ctx.cache.get_many(fp, list(parts.owner)) if ctx.cache is not None else {}
            for key, values in cached.items():
                requests.pop(key, None)
                parts.add(key, rename(values, back), True)
            finished(parts.drain())
        task = ctx.progress.task(ctx.node, len(requests), cached=len(uniq) - len(missing)) if ctx.progress else None

        from dslrun.runtime.execution.interrupt import CONTROLLER

        def on_result(result: Any) -> None:
            if result.status == "not_run" and result.reason == "stopped" and CONTROLLER.requested.is_set():
                return  # not sent because of Ctrl-C: neither a result nor a failure
            values, keep = op.row(result)
            if keep and ctx.cache is not None:
                stored_values = rename(values, stored)
                if broken:  # the pool is stopping; replies still landing go to the side file
                    side.add(fp, result.key, stored_values)
                else:
                    try:
                        ctx.cache.put_many(fp, [(result.key, stored_values)])
                    except Exception as exc:
                        if not is_write_error(exc):
                            raise
                        broken.append(exc)
                        side.add(fp, result.key, stored_values)
                        raise  # the pool stops dispatching
            with lock:
                if result.key in parts.owner:
                    parts.add(result.key, values, keep)
                    finished(parts.drain())
                else:
                    results[result.key] = values
                if keep:
                    ctx.stats.computed += 1
                else:
                    ctx.stats.failed += 1
            if task is not None:
                task.advance(1, failed=0 if keep else 1)

        def work(mine: list[str]) -> None:
            try:
                summary = send(op, [requests[k] for k in mine], ctx, on_result)
            except Exception:
                if not broken or ctx.cache is None:
                    raise
                raise CacheWriteFailed(
                    f"{describe_write_error(broken[0], ctx.cache.path or ctx.cache_root)}: the score cache could not be written, "
                    f"so the step stopped calling; {side.where()}"
                    + (", and the next run imports them" if side.path and side.path.parent == ctx.out_dir else "")
                ) from None
            ctx.stats.notes.append(summary_note(op, summary))
            if summary.fatal is not None:
                raise EndpointRefused(refusal(op, summary))

        def collect(values: dict[str, Any]) -> None:
            with lock:
                for key, v in values.items():
                    if key in parts.owner:
                        parts.add(key, rename(v, back), True)
                    else:
                        results[key] = rename(v, back)
                finished(parts.drain())
            if task is not None:
                task.advance(len(values))

        CONTROLLER.check()
        # Claimed before sending: a second run on this cache waits for these replies instead of
        # paying for them; what gets no reply is released for whoever asks next.
        waited = share(ctx.cache, fp, list(requests), lambda pending: [pending], work, collect, label=ctx.node)
        if waited:
            ctx.stats.notes.append(f"{waited} samples were answered by another run sharing the cache")
        if task is not None:
            task.done()
        CONTROLLER.check()  # stopped by Ctrl-C: what landed is cached; do not go on with a partial table
    out = op.finish(table.with_columns(assemble(op, ids, results, table)), ctx)
    reasons = out.column(op.reason_column)
    ctx.stats.outcomes = dict(Counter(outcome_of(reasons[r]) for r in first_rows))
    ctx.stats.max_failed_fraction = op.llm.max_failed_fraction
    ctx.stats.notes.append(f"outcomes: {outcome_line(ctx.stats.outcomes)}")
    return out


class Parts:
    """Samples an operator scores with several calls (``LlmOperator.calls``): each call is
    cached under ``{sample id}#{k}``, and once every part of a sample is in, the combined
    values (``LlmOperator.combine``) go under the sample id, cached only when every part was."""

    def __init__(self, op: LlmOperator):
        self.op = op
        self.owner: dict[str, str] = {}
        self.keys: dict[str, list[str]] = {}
        self.got: dict[str, tuple[dict[str, Any], bool]] = {}

    def plan(self, sid: str, chats: list) -> list[tuple[str, Any]]:
        keys = part_keys(sid, len(chats))
        self.keys[sid] = keys
        self.owner.update({k: sid for k in keys})
        return list(zip(keys, chats))

    def add(self, key: str, values: dict[str, Any], keep: bool) -> None:
        self.got[key] = (values, keep)

    def drain(self) -> list[tuple[str, dict[str, Any], bool]]:
        """(sample id, combined values, all parts kept) for every sample now complete."""
        out = []
        for sid, keys in list(self.keys.items()):
            if all(k in self.got for k in keys):
                got = [self.got.pop(k) for k in keys]
                out.append((sid, self.op.combine([v for v, _ in got]), all(k for _, k in got)))
                del self.keys[sid]
        return out


def part_keys(sid: str, n: int) -> list[str]:
    """The cache keys of a sample's *n* calls."""
    return [f"{sid}#{k}" for k in range(n)]


def pending_chats(op: LlmOperator, table: Table, rows: list[int], ctx: RunContext) -> list[Any]:
    """The chats a run sends for *rows* (samples not cached): all of a sample's calls but
    those an earlier, interrupted run already cached (``dslrun plan`` counts these)."""
    cols = {c: table.column(c) for c in op.sample_columns}
    ids = table.ids
    chats: list[Any] = []
    parts: dict[str, Any] = {}
    for r in rows:
        sample = {c: v[r] for c, v in cols.items()}
        calls = op.calls(sample)
        if calls is None:
            chats.append(op.messages(sample))
        else:
            parts.update(zip(part_keys(str(ids[r]), len(calls)), calls))
    done = ctx.cache.get_many(node_fingerprint(op), list(parts)) if parts and ctx.cache is not None else {}
    return chats + [chat for key, chat in parts.items() if key not in done]
