"""Run settings that belong to a place, not to a recipe: ``dslrun.yaml``.

The same spec runs unchanged on a laptop and on a cluster; where it runs is said by
the command line or by a ``dslrun.yaml`` in the working directory (or the file named
by $DSLRUN_CONFIG)::

    engine: ray
    address: auto            # or head-node:6379; omit for a throwaway local cluster
    replicas: 8              # model replicas (default: one per GPU, else one per node)
    gpus_per_replica: 1
    cpus_per_replica: 4
    spill_rows: 100000       # pools larger than this keep their text on disk (see disk_columns.py)
    tmp_dir: /scratch/dslrun # where that text goes (default: $DSLRUN_TMPDIR, else the system's)
    allow_paths: [/data/pools]  # folders specs may read besides their own and the current one

The engine keys may also be written in the spec itself (``engine: ray``; dsl/settings.py).
Each key is taken from the first place that gives it: command-line flags, then the spec's
settings, then this file, then the defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dslrun.core.errors import CLI, ErrorList, SpecError
from dslrun.dsl.settings import SETTINGS

# The engine keys are the ones a spec may set too; the rest belong to the machine alone.
KEYS = (*SETTINGS, "spill_rows", "tmp_dir", "allow_paths")


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
    allow = data.get("allow_paths", [])
    if not isinstance(allow, list) or not all(isinstance(d, str) for d in allow):
        raise ErrorList([SpecError(CLI, f"{path}: allow_paths must be a list of folders")])
    if data.get("engine", "local") not in ("local", "ray"):
        raise ErrorList([SpecError(CLI, f"{path}: engine must be local or ray, not {data['engine']!r}")])
    return data, str(path)


def engine_settings(args: Any, spec: Mapping[str, Any] | None = None) -> tuple[str, str | None, dict[str, Any]]:
    """(engine, address, settings for the engine) from flags, then the spec's settings
    (``plan.settings``, already checked by compile), then dslrun.yaml, then defaults."""
    config, _ = load_config()
    spec = spec or {}

    def pick(key: str) -> Any:
        for value in (getattr(args, key, None), spec.get(key), config.get(key)):
            if value is not None:
                return value
        return None

    engine = pick("engine") or "local"
    settings = {f"ray_{k}": v for k in ("replicas", "gpus_per_replica", "cpus_per_replica")
                if (v := pick(k)) is not None}
    settings.update({k: config[k] for k in ("spill_rows", "tmp_dir") if config.get(k) is not None})
    return engine, pick("address"), settings
