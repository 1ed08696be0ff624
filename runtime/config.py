"""Run settings from where they are given: flags, the spec, the environment, ``dslrun.yaml``.

What the settings are, their defaults and their precedence: ``core/settings.py``. A
``dslrun.yaml`` in the working directory (or the file named by ``$DSLRUN_CONFIG``) holds
the ones that belong to a place rather than to a recipe::

    engine: ray
    address: auto            # or head-node:6379; omit for a throwaway local cluster
    replicas: 8              # model replicas (default: one per GPU, else one per node)
    gpus_per_replica: 1
    spill_rows: 100000       # pools larger than this keep their text on disk
    tmp_dir: /scratch/dslrun # where that text goes
    token_budget: 65536      # padded tokens per model forward pass
    allow_paths: [/data/pools]  # folders specs may read besides their own and the current one
    allow_endpoints: [https://vllm.lab.example/v1]  # servers a run may call without asking
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dslrun.core.errors import CLI, ErrorList, SpecError
from dslrun.core.settings import RunSettings, SettingsError, from_environment, resolve

KEYS = tuple(RunSettings.model_fields)


def load_config() -> tuple[dict[str, Any], str]:
    path = Path(os.environ.get("DSLRUN_CONFIG", "dslrun.yaml"))
    if not path.is_file():
        return {}, str(path)
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ErrorList([SpecError(CLI, f"{path}: expected a mapping of settings")])
    return data, str(path)


def environment() -> dict[str, str]:
    env = from_environment(os.environ)
    if "tmp_dir" not in env and os.environ.get("DSLRUN_TMPDIR"):  # the name this setting had before
        env["tmp_dir"] = os.environ["DSLRUN_TMPDIR"]
    return env


def run_settings(args: Any = None, spec: Mapping[str, Any] | None = None) -> RunSettings:
    """Flags (``args``), then the spec's settings (``plan.settings``, checked by compile), then
    ``DSLRUN_*`` variables, then dslrun.yaml, then the defaults; a bad name or value is a
    usage error that says where it came from."""
    config, path = load_config()
    flags = {k: getattr(args, k, None) for k in KEYS} if args is not None else {}
    try:
        return resolve(("command line", flags), ("the spec", dict(spec or {})), ("environment", environment()),
                       (path, config))
    except SettingsError as e:
        raise ErrorList([SpecError(CLI, str(e))]) from None
