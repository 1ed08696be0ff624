"""Run settings: how and where a spec runs, never what it selects. One model, one set of names.

``RunSettings`` is the single source of every setting the code reads, its default and its
meaning. Each one can be given, under the same name, in five places; the first that gives
it wins:

1. a command-line flag: ``--token-budget 32768`` (``dslrun run --help`` lists them all);
2. the spec itself, for the ``spec`` settings only (``engine: ray``; ``dsl/settings.py``);
3. the environment: ``DSLRUN_TOKEN_BUDGET=32768``;
4. ``dslrun.yaml`` in the working directory (or the file named by ``$DSLRUN_CONFIG``):
   ``token_budget: 32768``;
5. the default below.

Settings change no result and no cache key: batches, replicas and spill thresholds decide
how work is cut up, and every recipe gives the same output under any of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_PREFIX = "DSLRUN_"


# Marks the settings a spec may give too (``engine: ray``); see ``spec_keys``.
SPEC: dict[str, Any] = {"spec": True}


class RunSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- where it runs: a spec may say these too
    engine: Literal["local", "ray"] = Field("local", json_schema_extra=SPEC,
                                            description="local (this process) or ray (a Ray cluster)")
    address: str | None = Field(None, json_schema_extra=SPEC,
                                description="ray: the cluster to join (host:port or auto; default: a new local one)")
    replicas: int | None = Field(None, ge=1, json_schema_extra=SPEC,
                                 description="ray: model replicas (default: one per GPU, else one per node)")
    gpus_per_replica: float | None = Field(None, ge=0, json_schema_extra=SPEC,
                                           description="ray: GPUs per model replica (default 1 on GPU clusters)")
    cpus_per_replica: float | None = Field(None, gt=0, json_schema_extra=SPEC,
                                           description="ray: CPUs per model replica (default 1)")
    # -- how work is cut up on this machine
    workers: int = Field(4, ge=1, description="steps that may run at once")
    batch_rows: int = Field(2048, ge=1, description="rows per batch for cheap per-sample operators")
    model_batch_rows: int = Field(64, ge=1, description="most rows per batch for model operators")
    token_budget: int = Field(16384, ge=1, description="padded tokens per model forward pass (raise it on GPUs)")
    grad_memory: int = Field(2 << 30, ge=1, description="gradient-sim: bytes of per-sample gradients held "
                                                              "at once")
    grad_token_budget: int = Field(2048, ge=1, description="gradient-sim: tokens per backward pass")
    spill_rows: int = Field(100_000, ge=0, description="pools larger than this keep their text on disk "
                                                       "(0: always)")
    tmp_dir: str | None = Field(None, description="where that text goes (default: the system's temp dir)")
    ray_num_cpus: int | None = Field(None, ge=1, description="ray: CPUs of a throwaway local cluster")
    ray_window_rows: int = Field(200_000, ge=1, description="ray: rows of a cheap operator in flight at once")
    ray_worker_logs: bool = Field(False, description="ray: forward the workers' logs to this terminal")
    # -- what the run tells you, and how it stops
    progress_interval: float = Field(30.0, ge=0, description="when stderr is not a terminal (nohup, CI): one "
                                     "progress line per running step every this many seconds (0: only when a "
                                     "step starts and ends)")
    interrupt_grace: float = Field(60.0, gt=0, description="after Ctrl-C, seconds to wait at most for replies and "
                                   "batches in flight to be cached (a second Ctrl-C quits at once)")
    warn_kept_below: float = Field(0.01, ge=0, le=1, description="warn when a step keeps fewer than this share "
                                   "of its input rows (keeping 0 rows always warns)")
    # Never a spec setting: a spec cannot widen its own trust boundary (dsl/trust.py).
    allow_paths: list[str] = Field(default_factory=list, description="folders a spec may read besides its "
                                   "own and the current one (see README: Security)")
    allow_endpoints: list[str] = Field(default_factory=list, description="servers a run may call without asking "
                                       "(a URL, or host[:port]) besides loopback and those named on the command "
                                       "line (see README: Security)")

    @classmethod
    def spec_keys(cls) -> tuple[str, ...]:
        return tuple(k for k, f in cls.model_fields.items()
                     if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("spec"))


class SettingsError(ValueError):
    """A setting with a bad name or value, said with where it came from."""


def from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``DSLRUN_<NAME>`` for every setting NAME (values are validated with the rest)."""
    return {k: environ[ENV_PREFIX + k.upper()] for k in RunSettings.model_fields if ENV_PREFIX + k.upper() in environ}


def resolve(*sources: tuple[str, Mapping[str, Any]]) -> RunSettings:
    """Settings from (name of the place, values) sources, highest precedence first; a value
    of None means "not given here"."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for where, values in sources:
        for key, value in values.items():
            if key not in RunSettings.model_fields:
                from dslrun.core.errors import did_you_mean

                hint = did_you_mean(key, RunSettings.model_fields) or f"known: {', '.join(RunSettings.model_fields)}"
                raise SettingsError(f"{where}: unknown setting `{key}`; {hint}")
            if value is not None and key not in merged:
                merged[key], origin[key] = value, where
    try:
        return RunSettings(**merged)
    except ValidationError as e:
        err = e.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "?"
        raise SettingsError(f"{origin.get(key, '?')}: setting `{key}`: {err['msg']} "
                            f"(got {merged.get(key)!r})") from None
