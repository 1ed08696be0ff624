"""A whole run: credentials check, execution with progress, lock file, summary."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from dslrun.core.errors import Collector, Span
from dslrun.core.params import FieldKind, field_kind
from dslrun.core.settings import RunSettings
from dslrun.core.values import to_python
from dslrun.dsl.compile import Plan
from dslrun.runtime.cache.sqlite import ScoreCache
from dslrun.runtime.config import run_settings
from dslrun.runtime.data.pool_files import atomic_write
from dslrun.runtime.execution.context import RunContext
from dslrun.runtime.execution.executor import NodeFailed, RunResult
from dslrun.runtime.lockfile import build_lock, write_lock


def env_vars(op: Any) -> dict[str, str]:
    """Parameter → name of the environment variable it needs (an operator may add defaults)."""
    declared = getattr(op, "env_vars", None)
    if declared is not None:
        return declared()
    params = type(op.params)
    return {k: getattr(op.params, k) for k in params.model_fields if field_kind(params, k) == FieldKind.ENV}


def check_credentials(plan: Plan) -> None:
    """API operators name the environment variable holding their key; it must be set to run."""
    errors = Collector()
    for node in plan.nodes.values():
        if node.op is None:
            continue
        for key, var in env_vars(node.op).items():
            if var and not os.environ.get(var):
                span = (node.step.arg_spans.get(key) or node.step.op_span or node.step.span
                        or Span(plan.spec.file))
                errors.add(span, f"`{node.name}` needs the environment variable {var} (its API key), which is not set",
                           f"export {var}=... before running, or point `{key}` at another variable")
    errors.raise_if_any()


def summary_lines(plan: Plan, result: RunResult) -> list[str]:
    header = ("step", "op", "rows in", "rows out", "cache hits", "misses", "seconds")
    rows = []
    for name in plan.order:
        s = result.stats.get(name)
        if s is None:
            continue
        sample = s.cache_hits or s.cache_misses
        rows.append((name, plan.nodes[name].step.op, str(s.rows_in) if plan.nodes[name].inputs else "-",
                     str(s.rows_out), str(s.cache_hits) if sample else "-", str(s.cache_misses) if sample else "-",
                     f"{s.seconds:.2f}"))
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    for name in plan.order:
        s = result.stats.get(name)
        for note in (s.notes if s else []):
            lines.append(f"{name}: {note}")
    return lines


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run_plan(plan: Plan, overrides: dict[str, Any], spec_text: str, out: Path, cache_dir: Path, *,
             quiet: bool = False, version: str = "0", settings: RunSettings | None = None) -> int:
    from dslrun.runtime.execution.engines import EngineError, make_engine
    from dslrun.runtime.execution.progress import Progress

    check_credentials(plan)
    out.mkdir(parents=True, exist_ok=True)
    settings = settings or run_settings(spec=plan.settings)
    try:
        runner = make_engine(settings)
    except EngineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    cache = ScoreCache(cache_dir / "scores.sqlite")
    ctx = RunContext(out_dir=out, spec_dir=plan.spec_dir, cache=cache, settings=settings)
    try:
        engine_info = runner.describe()
        if quiet:
            result = runner.execute(plan, ctx, settings.workers)
        else:
            with Progress() as progress:
                ctx.progress = progress
                result = runner.execute(plan, ctx, settings.workers)
    except NodeFailed as e:
        print(f"error: {e}", file=sys.stderr)
        print("everything computed before the failure is cached; fix the cause and run again to resume",
              file=sys.stderr)
        return 1
    finally:
        cache.close()
        ctx.models.release()
        runner.close()
    plain = {k: to_python(v) for k, v in overrides.items()}
    lock = build_lock(plan, result, spec_text, plain, version, out)
    lock_path = write_lock(out, lock)
    run_info = {"seconds": round(result.seconds, 3), "engine": engine_info, "model_loads": ctx.models.loads,
                "driver_peak_rss_mib": round(peak_rss_mib(), 1),
                "nodes": {n: s.as_dict() for n, s in result.stats.items()}}
    atomic_write(out / "run.json", lambda tmp: tmp.write_text(json.dumps(run_info, indent=2) + "\n"))
    from dslrun.dsl.explain import profile

    feasibility = profile(plan).as_dict()
    atomic_write(out / "profile.json", lambda tmp: tmp.write_text(json.dumps(feasibility, indent=2) + "\n"))
    for line in summary_lines(plan, result):
        print(line)
    print(f"lock file: {lock_path}")
    try:  # the report is a view of the run: a failure here must not fail the run
        from dslrun.runtime.report import write_report

        print(f"report: {write_report(plan, result, out, feasibility)}")
    except Exception as e:  # pragma: no cover - defensive
        print(f"warning: the run report could not be written: {type(e).__name__}: {e}", file=sys.stderr)
    print(f"done in {result.seconds:.2f}s")
    return 0
