"""The one table of operator kinds, and how each kind runs.

Three kinds, three runners. The executor (``run``), the planner (``plan``: the same
runners with ``ctx.dry_run`` set) and the Ray engine (its own ``Runners``, which ship
batches and requests to actors) all go through ``run_step``; no other module decides
how a kind of step runs.
"""

from __future__ import annotations

from dslrun.operators.base import Operator, SampleOperator, TableOperator
from dslrun.operators.llm.base import LlmOperator
from dslrun.runtime.data.table import Table
from dslrun.runtime.execution.context import RunContext
from dslrun.runtime.execution.llm_runner import run_llm_op
from dslrun.runtime.execution.sample_runner import run_sample_op


class Runners:
    """How an engine runs each kind. The local engine computes in this process; the Ray
    engine overrides ``sample`` and ``llm`` to ship the work to actors while the cache
    bookkeeping stays here (see ``engines/ray.py``). Table steps always run in the driver."""

    def table(self, op: TableOperator, inputs: list[Table], ctx: RunContext) -> Table:
        return op.run(inputs, ctx)

    def sample(self, op: SampleOperator, table: Table, ctx: RunContext) -> Table:
        return run_sample_op(op, table, ctx)

    def llm(self, op: LlmOperator, table: Table, ctx: RunContext) -> Table:
        return run_llm_op(op, table, ctx)


KINDS: tuple[tuple[type[Operator], str], ...] = (
    (TableOperator, "table"),
    (SampleOperator, "sample"),
    (LlmOperator, "llm"),
)


def kind_of(op: Operator) -> str:
    for cls, kind in KINDS:
        if isinstance(op, cls):
            return kind
    raise TypeError(f"{type(op).__name__} is not a table, sample or LLM operator")


def run_step(op: Operator, inputs: list[Table], ctx: RunContext, runners: Runners) -> Table:
    kind = kind_of(op)
    if kind == "table":
        assert isinstance(op, TableOperator)
        return runners.table(op, inputs, ctx)
    if kind == "sample":
        assert isinstance(op, SampleOperator)
        return runners.sample(op, inputs[0], ctx)
    assert isinstance(op, LlmOperator)
    return runners.llm(op, inputs[0], ctx)


LOCAL = Runners()
