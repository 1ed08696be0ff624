"""dslrun: declarative selection of instruction-tuning data, from Python.

    import dslrun
    res = dslrun.run("specs/longest.sel", set={"k": 100}, pool=my_dataframe)
    res.selected.to_pandas()      # the subset, in the pool's own schema (pyarrow.Table)
    res.scores                    # id, row and every computed score (pyarrow.Table)
    dslrun.check("specs/ifd.sel") # the spec's errors as SpecError objects ([] when fine)
    dslrun.compile("specs/ifd.sel").explain()

This folder holds only this file: the engine is ``dslrun.core``, ``dslrun.dsl``,
``dslrun.operators`` and ``dslrun.runtime`` (the repository's top-level folders, mapped
by setup.py), and the API lives in ``dslrun.runtime.python_api``. Its names are loaded
on first use, so ``import dslrun`` stays light (no torch, not even the compiler).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CompiledPlan", "EndpointNotAllowed", "ErrorList", "Result", "SpecError", "check", "compile", "run"]

_WHERE = {
    "run": "dslrun.runtime.python_api.specs",
    "check": "dslrun.runtime.python_api.specs",
    "compile": "dslrun.runtime.python_api.specs",
    "CompiledPlan": "dslrun.runtime.python_api.specs",
    "Result": "dslrun.runtime.python_api.result",
    "SpecError": "dslrun.core.errors",
    "ErrorList": "dslrun.core.errors",
    "EndpointNotAllowed": "dslrun.runtime.endpoints",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'dslrun' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
