"""Engines: where the work of a compiled plan runs (``local`` in-process, or ``ray``)."""

from dslrun.runtime.execution.engines.base import ENGINES, Engine, EngineError, make_engine

__all__ = ["ENGINES", "Engine", "EngineError", "make_engine"]
