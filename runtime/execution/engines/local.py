"""The default engine: everything in this process (threads for overlap, see executor.py)."""

from __future__ import annotations

from typing import Any

from dslrun.dsl.compile import Plan
from dslrun.runtime.execution.context import RunContext
from dslrun.runtime.execution.executor import RunResult, execute


class LocalEngine:
    name = "local"

    def execute(self, plan: Plan, ctx: RunContext, workers: int) -> RunResult:
        return execute(plan, ctx, workers=workers)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def close(self) -> None:
        pass
