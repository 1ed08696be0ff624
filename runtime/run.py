"""A whole run: credentials check, execution with progress, lock file, summary."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dslrun.core.errors import Collector, Span
from dslrun.core.params import FieldKind, field_kind
from dslrun.core.settings import RunSettings
from dslrun.core.values import to_python
from dslrun.dsl.compile import Plan
from dslrun.runtime.cache.unsaved import describe_write_error
from dslrun.runtime.config import run_settings
from dslrun.runtime.data.out_paths import guard
from dslrun.runtime.data.pool_files import atomic_write
from dslrun.runtime.endpoints import EndpointNotAllowed, EndpointPolicy, check_endpoints
from dslrun.runtime.execution.context import RunContext
from dslrun.runtime.execution.executor import NodeFailed, RunResult
from dslrun.runtime.execution.llm_runner import CacheWriteFailed, EndpointRefused
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


def failure_message(e: NodeFailed, out: Path) -> str:
    """A failed step in words: our own errors say what happened, a failed write names the path."""
    cause = e.cause
    if isinstance(cause, EndpointRefused | CacheWriteFailed):
        return f"step `{e.node}` ({e.op}): {cause}"
    if isinstance(cause, OSError):
        return f"step `{e.node}` ({e.op}): {describe_write_error(cause, cause.filename or out)}"
    return str(e)


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


def interrupted_lines(plan: Plan, stats: dict[str, Any]) -> list[str]:
    """What an interrupted run leaves: what it cached, per step, and how to resume."""
    import shlex

    lines = ["interrupted: replies and batches in flight were cached; nothing new was sent"]
    for name in plan.order:
        s = stats.get(name)
        if s is not None and (s.computed or s.failed or s.cache_misses):
            left = max(s.cache_misses - s.computed - s.failed, 0)
            lines.append(f"  {name}: {s.computed} computed and cached in this run, {s.cache_hits} were cached "
                         f"before, {left} left" + (f", {s.failed} failed" if s.failed else ""))
    lines.append("resume: run the same command again; cached samples are not computed or paid for again:")
    lines.append("  dslrun " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "  (the same dslrun command)")
    return lines


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@dataclass
class RunOutcome:
    """What a finished run leaves: the tables and statistics of every step, and its files."""

    plan: Plan
    result: RunResult
    out: Path
    lock_path: Path
    report_path: Path | None
    feasibility: dict[str, Any]
    failures: dict[str, str]  # step → why, for steps that finished with failed samples
    warnings: list[str]


def execute_run(plan: Plan, overrides: dict[str, Any], spec_text: str, out: Path, cache_dir: Path, *,
                progress: bool = True, version: str = "0", settings: RunSettings | None = None,
                handle_sigint: bool = True, endpoints: EndpointPolicy | None = None) -> RunOutcome:
    """One whole run, for the CLI and the Python API alike. Raises ``ErrorList`` (missing
    credentials), ``EndpointNotAllowed`` (a server the user has not agreed to; nothing sent,
    nothing written), ``EngineError`` (no engine) or ``NodeFailed`` (a step failed, or the run
    was interrupted; everything computed before it is cached). ``handle_sigint``: the CLI's
    two-stage Ctrl-C (a notebook keeps its own). ``endpoints``: what the user agreed to (default:
    loopback and the URLs in ``overrides`` and ``settings.allow_endpoints``, asking no one)."""
    from dslrun.runtime.cache.open_store import open_store

    check_credentials(plan)
    settings = settings or run_settings(spec=plan.settings)
    cache = open_store(cache_dir)
    try:  # before anything is sent or written
        check_endpoints(plan, [to_python(v) for v in overrides.values()], settings, endpoints or EndpointPolicy(),
                        cache)
    except BaseException:
        cache.close()
        raise
    out.mkdir(parents=True, exist_ok=True)
    with guard(out):  # every write below --out stays below it (runtime/data/out_paths.py)
        return _run_and_record(plan, overrides, spec_text, out, cache, settings, progress=progress,
                               version=version, handle_sigint=handle_sigint)


def _run_and_record(plan: Plan, overrides: dict[str, Any], spec_text: str, out: Path, cache: Any,
                    settings: RunSettings, *, progress: bool, version: str, handle_sigint: bool) -> RunOutcome:
    from contextlib import nullcontext

    from dslrun.runtime.execution.engines import make_engine
    from dslrun.runtime.execution.interrupt import sigint_handler
    from dslrun.runtime.execution.outcomes import warning_lines
    from dslrun.runtime.execution.progress import make_progress

    runner = make_engine(settings)
    ctx = RunContext(out_dir=out, spec_dir=plan.spec_dir, cache=cache, settings=settings)
    try:
        engine_info = runner.describe()
        with sigint_handler(settings.interrupt_grace) if handle_sigint else nullcontext():
            if not progress:
                result = runner.execute(plan, ctx, settings.workers)
            else:
                with make_progress(settings.progress_interval) as bars:
                    ctx.progress = bars
                    result = runner.execute(plan, ctx, settings.workers)
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
    try:  # a view of the run, like the report: it must not fail the run
        from dslrun.runtime.lineage import pool_scores

        pool_scores.write(plan, result.tables, out)
    except Exception as e:  # pragma: no cover - defensive
        print(f"warning: pool.scores.parquet could not be written: {type(e).__name__}: {e}", file=sys.stderr)
    report_path = None
    try:  # the report is a view of the run: a failure here must not fail the run
        from dslrun.runtime.report import write_report

        report_path = write_report(plan, result, out, feasibility)
    except Exception as e:  # pragma: no cover - defensive
        print(f"warning: the run report could not be written: {type(e).__name__}: {e}", file=sys.stderr)
    failures = {name: why for name in plan.order if (s := result.stats.get(name)) and (why := s.failure())}
    return RunOutcome(plan, result, out, lock_path, report_path, feasibility, failures,
                      list(warning_lines(plan.order, result.stats)))


def run_plan(plan: Plan, overrides: dict[str, Any], spec_text: str, out: Path, cache_dir: Path, *,
             quiet: bool = False, version: str = "0", settings: RunSettings | None = None,
             endpoints: EndpointPolicy | None = None) -> int:
    """``dslrun run``: ``execute_run`` with its summary printed; returns the exit code."""
    from dslrun.runtime.execution.engines import EngineError
    from dslrun.runtime.execution.interrupt import EXIT_INTERRUPTED, Interrupted

    try:
        done = execute_run(plan, overrides, spec_text, out, cache_dir, progress=not quiet, version=version,
                           settings=settings, endpoints=endpoints)
    except EndpointNotAllowed as e:
        print(f"error: {e.hint}" if e.asked else f"error: {e}", file=sys.stderr)
        return 2
    except EngineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except NodeFailed as e:
        if isinstance(e.cause, Interrupted):
            for line in interrupted_lines(plan, e.stats):
                print(line, file=sys.stderr)
            return EXIT_INTERRUPTED
        print(f"error: {failure_message(e, out)}", file=sys.stderr)
        if not isinstance(e.cause, CacheWriteFailed):
            print("everything computed before the failure is cached; fix the cause and run again to resume",
                  file=sys.stderr)
        return 1
    for line in summary_lines(plan, done.result):
        print(line)
    for line in done.warnings:
        print(f"warning: {line}", file=sys.stderr)
    print(f"lock file: {done.lock_path}")
    if done.report_path is not None:
        print(f"report: {done.report_path}")
    print(f"done in {done.result.seconds:.2f}s")
    for name, why in done.failures.items():
        print(f"error: step `{name}`: {why}; the outputs above were saved; a re-run asks only the failed "
              f"samples again", file=sys.stderr)
    return 1 if done.failures else 0
