"""``dslrun plan``: what a run will do and cost, before paying for anything.

Cheap steps (loading, filtering, ranking) run for real so row counts are
exact. A per-sample step counts its cached samples; if some are missing it is
not computed, and every step after it reports an upper bound (``≤``) on rows
and counts its cache hits over that superset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dslrun.core.context import NodeStats
from dslrun.core.cost import Cost
from dslrun.core.keys import node_fingerprint
from dslrun.dsl.compile import Plan
from dslrun.operators.base import CachedOperator, TableOperator
from dslrun.operators.llm.base import LlmOperator
from dslrun.runtime.data.table import Table
from dslrun.runtime.execution.context import RunContext
from dslrun.runtime.execution.dispatch import LOCAL, Runners
from dslrun.runtime.execution.executor import run_node
from dslrun.runtime.execution.llm_runner import pending_chats
from dslrun.runtime.execution.sample_runner import unique_first


@dataclass
class PlanRow:
    name: str
    op: str
    resource: str
    rows: int
    exact: bool
    cached: int | None = None
    samples: int | None = None
    cost: Cost = field(default_factory=Cost)


def dry_run(plan: Plan, ctx: RunContext, runners: Runners = LOCAL) -> list[PlanRow]:
    """Every step through the runners a run uses, with ``ctx.dry_run`` set: the same code
    decides what a step gives, so the plan cannot disagree with the run about a cached step."""
    ctx.dry_run = True
    tables: dict[str, Table] = {}
    exact: dict[str, bool] = {}
    rows: list[PlanRow] = []
    for name in plan.order:
        node = plan.nodes[name]
        op = node.op
        assert op is not None
        inputs = [tables[i] for i in node.inputs]
        refs = [r for r in op.step_refs() if r in tables]
        known = all(exact[i] for i in [*node.inputs, *refs])
        nctx = ctx.for_node(name, NodeStats())
        nctx.refs = {r: tables[r] for r in refs}
        row = PlanRow(name, op.name, label(op), 0, known)
        if isinstance(op, CachedOperator):  # over a superset of its rows when an earlier step is not exact
            row.samples, row.cached, row.cost = cached_work(op, inputs[0], nctx)
        elif known and isinstance(op, TableOperator):
            work = op.dry_run_cost(inputs, nctx)
            if work is not None:
                row.samples, row.cached, row.cost = work
                known = row.cached == row.samples  # the step runs only on what is cached
        if row.cost.money is not None and not paid_endpoint(op):
            row.cost.money = None  # a price for a local or self-hosted server is not a cost
        if known:
            tables[name] = run_node(plan, name, inputs, nctx, runners)
            known = nctx.stats.pending == 0
        else:
            tables[name] = inputs[0] if inputs else Table({})
        exact[name] = row.exact = known
        row.rows = len(tables[name])
        rows.append(row)
    return rows


def paid_endpoint(op: Any) -> bool:
    """Whether the op's LLM calls go to a known paid provider (``runtime/api/endpoints.py``); only
    there does a `price` become a cost in the plan (a loopback or LAN server costs no money)."""
    from dslrun.runtime.api.backends import resolve_base_url
    from dslrun.runtime.api.endpoints import paid_host

    llm = getattr(op, "llm", None)
    if llm is None or getattr(llm, "backend", None) == "local":
        return False
    return paid_host(resolve_base_url(llm.base_url)[0])


def label(op: Any) -> str:
    """The kind column: `local` for an LLM step answered by an in-process model, not `api`."""
    llm = getattr(op, "llm", None)
    return "local" if llm is not None and getattr(llm, "backend", None) == "local" else op.resource.value


def cached_work(op: CachedOperator, table: Table, ctx: RunContext) -> tuple[int, int, Cost]:
    """(distinct samples, cached, the work left) of a per-sample step."""
    samples, cached = ctx.count_cached(op, table)
    if cached == samples:
        return samples, cached, op.estimate(0)
    uniq, first = unique_first(table.ids)
    done = ctx.cache.get_many(node_fingerprint(op), uniq) if (op.cacheable and ctx.cache) else {}
    missing = [r for sid, r in zip(uniq, first) if sid not in done]
    if isinstance(op, LlmOperator):  # one call per chat: per turn with `multi_turn: per_turn`
        return samples, cached, op.estimate_chats(len(missing), pending_chats(op, table, missing, ctx))
    return samples, cached, op.estimate_rows(table, missing)


def render(plan: Plan, rows: list[PlanRow], cache_path: str) -> str:
    header: tuple[str, ...] = ("#", "step", "op", "kind", "rows", "cached", "to compute", "model passes",
                               "API calls", "tokens in+out", "cost")
    body: list[tuple[str, ...]] = []
    total = Cost()
    for i, r in enumerate(rows, 1):
        rows_txt = f"{r.rows}" if r.exact else f"≤{r.rows}"
        tokens = money = "-"
        if r.samples is None:
            cached = todo = passes = calls = "-"
        else:
            cached = f"{r.cached}/{r.samples}"
            todo = str(r.cost.samples)
            passes, calls = str(r.cost.forward_passes), str(r.cost.api_calls)
            for k in ("samples", "forward_passes", "api_calls", "input_tokens", "output_tokens", "training_runs"):
                setattr(total, k, getattr(total, k) + getattr(r.cost, k))
            if r.cost.money is not None:
                total.money = (total.money or 0.0) + r.cost.money
                money = f"${r.cost.money:.4f}"
            if r.cost.input_tokens or r.cost.output_tokens:
                tokens = f"{r.cost.input_tokens}+{r.cost.output_tokens}"
        body.append((str(i), r.name, r.op, r.resource, rows_txt, cached, todo, passes, calls, tokens, money))
    if all(b[-2:] == ("-", "-") for b in body):  # no API step: no token or money columns
        header, body = header[:-2], [b[:-2] for b in body]
    widths = [max(len(row[c]) for row in [header, *body]) for c in range(len(header))]
    lines = [f"plan: {plan.spec.file} ({len(rows)} steps; cache {cache_path})"]
    for row in [header, *body]:
        lines.append("  " + "  ".join(cell.ljust(w) if c < 4 else cell.rjust(w)
                                      for c, (cell, w) in enumerate(zip(row, widths))).rstrip())
    summary = (f"to compute: {total.samples} samples, {total.forward_passes} model forward passes, "
               f"{total.api_calls} API calls")
    if total.input_tokens or total.output_tokens:
        summary += (f", {total.input_tokens} input + at most {total.output_tokens} output tokens"
                    " (input counted by the model's tokenizer where one is at hand, else estimated)")
    if total.training_runs:
        summary += (f", {total.training_runs} training run{'s' if total.training_runs != 1 else ''} "
                    "(fine-tunes, LoRA warm-ups; their passes are counted)")
    if total.money is not None:
        summary += f", about ${total.money:.2f}"
    elif total.api_calls:
        summary += ", no money cost (no price, or not a known paid provider)"
    lines.append(summary)
    lines.extend(endpoint_lines(plan, rows))
    return "\n".join(lines)


def endpoint_lines(plan: Plan, rows: list[PlanRow]) -> list[str]:
    """Which server each LLM step will call, and why that one (a line per step)."""
    out = []
    for r in rows:
        op = plan.nodes[r.name].op
        if not isinstance(op, LlmOperator):
            continue
        if op.llm.backend == "local":
            out.append(f"endpoint of {r.name}: model {op.model_name} in this process (backend: local)")
            continue
        url, source = op.endpoint_source()
        out.append(f"endpoint of {r.name}: {url} ({source}), model {op.model_name}, "
                   f"key in ${op.env_vars()['api_key_env']}")
    return out
