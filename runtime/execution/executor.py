"""Execute a compiled plan: nodes in dependency order, independent branches overlapping.

Nodes run on a small thread pool as soon as their inputs are ready. Nodes that
need a local model are serialised (one model resident at a time); API and CPU
work overlap with them. A failing node stops the run; everything already
cached stays cached, so the next run resumes.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from dslrun.core.context import NodeStats
from dslrun.core.cost import Resource
from dslrun.dsl.compile import Plan
from dslrun.runtime.data.table import Table
from dslrun.runtime.execution.context import RunContext
from dslrun.runtime.execution.dispatch import LOCAL, Runners, run_step
from dslrun.runtime.execution.interrupt import CONTROLLER, Interrupted
from dslrun.runtime.execution.outcomes import check_kept


class NodeFailed(Exception):
    def __init__(self, node: str, op: str, cause: BaseException, stats: dict[str, NodeStats] | None = None):
        self.node, self.op, self.cause, self.stats = node, op, cause, stats or {}
        super().__init__(f"step `{node}` ({op}) failed: {type(cause).__name__}: {cause}")


@dataclass
class RunResult:
    tables: dict[str, Table] = field(default_factory=dict)
    stats: dict[str, NodeStats] = field(default_factory=dict)
    seconds: float = 0.0


def run_node(plan: Plan, name: str, inputs: list[Table], ctx: RunContext, runners: Runners = LOCAL) -> Table:
    op = plan.nodes[name].op
    assert op is not None
    ctx.stats.rows_in = sum(len(t) for t in inputs)
    start = time.perf_counter()
    out = run_step(op, inputs, ctx, runners)
    ctx.stats.seconds = time.perf_counter() - start
    ctx.stats.rows_out = len(out)
    check_kept(ctx.stats, bool(plan.nodes[name].inputs), ctx.settings)
    return out


def execute(plan: Plan, ctx: RunContext, workers: int = 4, runners: Runners = LOCAL) -> RunResult:
    result = RunResult()
    t0 = time.perf_counter()
    model_lock = threading.Lock()
    pending = {n: set(plan.graph.predecessors(n)) for n in plan.order}
    running: dict[Future, str] = {}

    def work(name: str) -> Table:
        node = plan.nodes[name]
        stats = result.stats[name]
        inputs = [result.tables[i] for i in node.inputs]
        nctx = ctx.for_node(name, stats)
        # Steps named in parameters (``evaluate(..., pool: pool)``) are ready too: they are DAG edges.
        nctx.refs = {r: result.tables[r] for r in (node.op.step_refs() if node.op else []) if r in result.tables}
        nctx.input_columns = dict(plan.nodes[node.inputs[0]].columns) if node.inputs else {}
        if node.op is not None and node.op.resource == Resource.MODEL:
            with model_lock:
                return run_node(plan, name, inputs, nctx, runners)
        return run_node(plan, name, inputs, nctx, runners)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dslrun") as pool:
        def launch_ready() -> None:
            if CONTROLLER.requested.is_set():  # Ctrl-C: start nothing new
                return
            for name in [n for n, deps in pending.items() if not deps]:
                del pending[name]
                result.stats[name] = NodeStats()
                running[pool.submit(work, name)] = name

        launch_ready()
        while running:
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                name = running.pop(fut)
                try:
                    result.tables[name] = fut.result()
                except BaseException as e:
                    for other in running:
                        other.cancel()
                    if isinstance(e, Interrupted):  # let the other steps' work in flight land too
                        wait(list(running))
                    raise NodeFailed(name, plan.nodes[name].step.op, e, result.stats) from e
                for deps in pending.values():
                    deps.discard(name)
            launch_ready()
        if pending and CONTROLLER.requested.is_set():
            first = next(iter(pending))
            raise NodeFailed(first, plan.nodes[first].step.op, Interrupted("interrupted"), result.stats)
    result.seconds = time.perf_counter() - t0
    return result
