"""The engine interface: run a compiled plan, then let go of what was started.

Every engine keeps the local engine's guarantees because it shares its bookkeeping:
the DAG is scheduled by ``runtime/execution/executor.py`` in the driver, cache lookups and
commits happen in the driver (``run_sample_op``, ``run_llm_op``), and table operators
run in the driver. An engine only decides where per-sample batches and API requests
are computed (``dispatch.Runners``).
"""

from __future__ import annotations

from typing import Any, Protocol

from dslrun.core.settings import RunSettings
from dslrun.dsl.compile import Plan
from dslrun.runtime.execution.context import RunContext
from dslrun.runtime.execution.executor import RunResult

ENGINES = ("local", "ray")


class EngineError(RuntimeError):
    """The engine cannot start (not installed, cluster unreachable): a message for the user."""


class Engine(Protocol):
    name: str

    def execute(self, plan: Plan, ctx: RunContext, workers: int) -> RunResult: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def make_engine(settings: RunSettings) -> Engine:
    name = settings.engine
    if name == "local":
        from dslrun.runtime.execution.engines.local import LocalEngine

        return LocalEngine()
    if name == "ray":
        from dslrun.runtime.execution.engines.ray import RayEngine

        return RayEngine(settings)
    raise EngineError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
