"""Run settings a spec may carry (``engine: ray``): where it runs, never what it selects.

The names are the engine keys of ``dslrun.yaml`` (runtime/config.py takes them from
here, so the two cannot drift). Precedence, applied by ``runtime.config.engine_settings``:
command-line flags > the spec's settings > dslrun.yaml > defaults. Settings change no
result and no cache key, so a recipe that names its engine still runs the same anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

from dslrun.core.errors import did_you_mean

ENGINES = ("local", "ray")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class Rule(NamedTuple):
    what: str  # completes "must be ..."
    ok: Callable[[Any], bool]
    example: str


SETTINGS: dict[str, Rule] = {
    "engine": Rule("`local` or `ray`", lambda x: isinstance(x, str) and x in ENGINES, "engine: ray"),
    "address": Rule('a string such as "auto" or "head:6379"', lambda x: isinstance(x, str) and x != "",
                    'address: "auto"'),
    "replicas": Rule("a whole number >= 1", lambda x: _number(x) and isinstance(x, int) and x >= 1, "replicas: 4"),
    "gpus_per_replica": Rule("a number >= 0", lambda x: _number(x) and x >= 0, "gpus_per_replica: 1"),
    "cpus_per_replica": Rule("a number > 0", lambda x: _number(x) and x > 0, "cpus_per_replica: 4"),
}


def setting_problem(name: str, value: Any) -> tuple[str, str | None] | None:
    """(message, hint) when ``value`` is not allowed for the known setting ``name``, else None."""
    rule = SETTINGS[name]
    if rule.ok(value):
        return None
    shown = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
    hint = did_you_mean(value, ENGINES) if name == "engine" and isinstance(value, str) else None
    return f"setting `{name}` must be {rule.what}, not {shown}", hint or f"e.g. `{rule.example}`"
