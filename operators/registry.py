"""Operators by spec name. Importing this module must stay cheap: no torch, no openai.

Built-in operator modules are listed here and imported on first lookup;
plugins add more with ``register`` (``dslrun --plugin module`` or the
``DSLRUN_PLUGINS`` environment variable, comma-separated module names).
"""

from __future__ import annotations

import importlib
import os

from dslrun.operators.base import Operator

BUILTIN_MODULES = (
    "load", "save", "filter", "rank", "sample", "derive", "dedup", "length", "diverse_sample", "ifd", "perplexity", "embed",
    "judge_score", "tag", "quota", "knn", "reward", "union", "evaluate", "necessity", "gradient_sim",
    "nuggets",
)

_REGISTRY: dict[str, type[Operator]] = {}
_loaded = False


def register(cls: type[Operator]) -> type[Operator]:
    """Class decorator: make an operator available to specs under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in BUILTIN_MODULES:
        importlib.import_module(f"dslrun.operators.{mod}")
    for mod in filter(None, (m.strip() for m in os.environ.get("DSLRUN_PLUGINS", "").split(","))):
        load_plugin(mod)


def load_plugin(module: str) -> None:
    importlib.import_module(module)


def get(name: str) -> type[Operator] | None:
    _load()
    return _REGISTRY.get(name)


def names() -> list[str]:
    _load()
    return sorted(_REGISTRY)
