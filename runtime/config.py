"""Run settings that belong to a place, not to a recipe: ``dslrun.yaml``.

The same spec runs unchanged on a laptop and on a cluster; where it runs is said by
the command line or by a ``dslrun.yaml`` in the working directory (or the file named
by $DSLRUN_CONFIG)::

    engine: ray
    address: auto            # or head-node:6379; omit for a throwaway local cluster
    replicas: 8              # model replicas (default: one per GPU, else one per node)
    gpus_per_replica: 1
    cpus_per_replica: 4

Command-line flags win over the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dslrun.dsl.errors import CLI, ErrorList, SpecError

KEYS = ("engine", "address", "replicas", "gpus_per_replica", "cpus_per_replica")


def load_config() -> tuple[dict[str, Any], str]:
    path = Path(os.environ.get("DSLRUN_CONFIG", "dslrun.yaml"))
    if not path.is_file():
        return {}, str(path)
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ErrorList([SpecError(CLI, f"{path}: expected a mapping of settings")])
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ErrorList([SpecError(CLI, f"{path}: unknown setting(s) {', '.join(unknown)}",
                                   f"known: {', '.join(KEYS)}")])
    if data.get("engine", "local") not in ("local", "ray"):
        raise ErrorList([SpecError(CLI, f"{path}: engine must be local or ray, not {data['engine']!r}")])
    return data, str(path)


def engine_settings(args: Any, spec: Path) -> tuple[str, str | None, dict[str, Any]]:
    """(engine, address, settings for the engine) from flags, then dslrun.yaml, then defaults."""
    config, _ = load_config()

    def pick(flag: str) -> Any:
        value = getattr(args, flag, None)
        return value if value is not None else config.get(flag)

    engine = pick("engine") or "local"
    settings = {f"ray_{k}": v for k in ("replicas", "gpus_per_replica", "cpus_per_replica")
                if (v := pick(k)) is not None}
    return engine, pick("address"), settings
