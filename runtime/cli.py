"""The ``dslrun`` command. Exit codes: 0 ok, 2 spec error, 1 runtime failure, 3 a bug in dslrun,
130 interrupted.

``dslrun SPEC`` is ``dslrun run SPEC``. ``check``, ``plan``, ``explain``, ``graph``, ``fmt``
and ``schema`` never import torch or transformers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from dslrun.core.errors import CLI, ErrorList, SpecError

COMMANDS = ("run", "check", "plan", "explain", "graph", "fmt", "schema", "cache", "report", "why")
EXIT_OK, EXIT_RUNTIME, EXIT_SPEC, EXIT_INTERNAL = 0, 1, 2, 3


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as v

    try:
        return v("dslrun")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        return "0+unknown"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dslrun", description="Declarative selection of instruction-tuning data.")
    p.add_argument("--version", action="version", version=f"dslrun {version()}")
    sub = p.add_subparsers(dest="command")

    def spec_cmd(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        sp.add_argument("spec", help="a .sel or .yaml spec")
        sp.add_argument("--set", action="append", default=[], metavar="NAME=VALUE|STEP.PARAM=VALUE",
                        help="override a spec parameter, or any step's argument with STEP.PARAM=VALUE "
                             "(repeatable)")
        sp.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE to register more operators")
        sp.add_argument("--allow-path", action="append", default=[], type=Path, metavar="DIR",
                        help="let the spec read files below DIR too (repeatable; see README: Security)")
        sp.add_argument("--allow-code", action="store_true",
                        help="let the spec name Python code to run (e.g. evaluate's benchmarks)")
        return sp

    r = spec_cmd("run", "compile and run a spec")
    r.add_argument("--out", type=Path, help="output directory (default: out/<spec name>)")
    r.add_argument("--cache-dir", type=Path, help="score cache directory (default: .dslrun, or $DSLRUN_CACHE_DIR)")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bars or progress lines")
    r.add_argument("--yes", "-y", action="store_true",
                   help="send requests to endpoints you have not named without asking (see README: Security)")
    r.add_argument("--allow-endpoint", action="append", default=[], metavar="URL",
                   help="let the run call this server (a URL, or host[:port]) without asking (repeatable)")
    add_setting_flags(r)
    spec_cmd("check", "static checks only; computes nothing")
    pl = spec_cmd("plan", "show the steps, what is cached, what a run will cost, and which servers it calls")
    pl.add_argument("--cache-dir", type=Path)
    pl.add_argument("--allow-endpoint", action="append", default=[], metavar="URL",
                    help="as for run: count this server as named by you")
    e = spec_cmd("explain", "the spec's feasibility profile: LLMs trained, steps, LLM usages, model-/dataset-/"
                            "closed-API-free")
    e.add_argument("--json", action="store_true", help="machine-readable output")
    g = spec_cmd("graph", "print the DAG")
    g.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    f = sub.add_parser("fmt", help="reformat a spec, or convert between .sel and YAML")
    f.add_argument("spec")
    f.add_argument("--to", choices=("sel", "yaml"), help="target spelling (default: the spec's own)")
    f.add_argument("--output", "-o", type=Path, help="write here instead of stdout")
    f.add_argument("--plugin", action="append", default=[])
    sub.add_parser("schema", help="JSON Schema of the YAML spelling")
    rp = sub.add_parser("report", help="(re)write RUN_DIR/report.html from a finished run")
    rp.add_argument("run_dir", type=Path, help="the output folder of a run (its --out)")
    w = sub.add_parser("why", help="one sample's path through the steps of a finished run: its scores, "
                                   "and which step dropped it and why")
    w.add_argument("run_dir", type=Path, help="the output folder of a run (its --out)")
    w.add_argument("sample", help="a sample id, or its row number in the pool file")
    c = sub.add_parser("cache", help="inspect or prune the score cache")
    c.add_argument("action", choices=("ls", "gc"))
    c.add_argument("--cache-dir", type=Path)
    c.add_argument("--older-than", type=float, metavar="DAYS", help="gc: nodes unused for DAYS")
    c.add_argument("--op", action="append", default=[], help="gc: nodes of this operator")
    c.add_argument("--all", action="store_true", help="gc: everything")
    return p


def parse_overrides(items: list[str]):
    from dslrun.core.values import Lit, Ref, Value, is_constant
    from dslrun.dsl.parse import parse_expression

    out: dict[str, Value] = {}
    for item in items:
        if "=" not in item:
            raise ErrorList([SpecError(CLI, f"--set {item}: expected NAME=VALUE", "e.g. --set threshold=4.5")])
        name, _, text = item.partition("=")
        if "." in name:  # STEP.PARAM: read by the compiler, which knows the field's kind
            out[name.strip()] = Lit(value=text, span=CLI)
            continue
        try:
            value = parse_expression(text, CLI.file)
            if isinstance(value, Ref):
                value = Lit(value=value.name)
            elif not is_constant(value):
                value = Lit(value=text)
        except ErrorList:
            value = Lit(value=text)
        out[name.strip()] = value.model_copy(update={"span": CLI})
    return out


def cache_dir(arg: Path | None) -> Path:
    return arg or Path(os.environ.get("DSLRUN_CACHE_DIR", ".dslrun"))


def _compile(args) -> tuple[Any, Any, str]:
    from dslrun.dsl.compile import compile_spec
    from dslrun.dsl.load import load_spec_text
    from dslrun.operators import registry

    for mod in getattr(args, "plugin", []):
        registry.load_plugin(mod)
    spec, text = load_spec_text(args.spec)
    overrides = parse_overrides(getattr(args, "set", []))
    plan = compile_spec(spec, overrides, trust=trust(args))
    return plan, overrides, text


def trust(args):
    from dslrun.dsl.trust import Trust
    from dslrun.runtime.config import load_config

    config, where = load_config()
    listed = config.get("allow_paths") or []
    if not isinstance(listed, list) or not all(isinstance(d, str) for d in listed):
        raise ErrorList([SpecError(CLI, f"{where}: allow_paths must be a list of folders")])
    dirs = [*getattr(args, "allow_path", []), *map(Path, listed)]
    return Trust(allow_paths=tuple(d.expanduser().resolve() for d in dirs),
                 allow_code=bool(getattr(args, "allow_code", False)))


def cmd_check(args) -> int:
    plan, _, _ = _compile(args)
    print(f"{args.spec}: ok ({len(plan.order)} steps)")
    return EXIT_OK


def cmd_plan(args) -> int:
    from dslrun.core.values import to_python
    from dslrun.runtime.cache.open_store import open_store
    from dslrun.runtime.config import run_settings
    from dslrun.runtime.endpoints import plan_lines, user_urls
    from dslrun.runtime.execution.context import RunContext
    from dslrun.runtime.execution.planner import dry_run, render

    plan, overrides, _ = _compile(args)
    cdir = cache_dir(args.cache_dir)
    cache = open_store(cdir)
    settings = run_settings(spec=plan.settings)
    ctx = RunContext(out_dir=Path("."), spec_dir=plan.spec_dir, cache=cache, settings=settings)
    print(render(plan, dry_run(plan, ctx), str(cdir)))
    allowed = [*args.allow_endpoint, *settings.allow_endpoints, *user_urls(to_python(v) for v in overrides.values())]
    for line in plan_lines(plan, allowed):
        print(line)
    return EXIT_OK


def cmd_explain(args) -> int:
    from dslrun.dsl.explain import profile, render

    plan, _, _ = _compile(args)
    prof = profile(plan)
    print(json.dumps(prof.as_dict()) if args.json else render(plan, prof), end="\n" if args.json else "")
    return EXIT_OK


def cmd_graph(args) -> int:
    from dslrun.dsl.graph import to_dot, to_mermaid

    plan, _, _ = _compile(args)
    sys.stdout.write(to_mermaid(plan) if args.format == "mermaid" else to_dot(plan))
    return EXIT_OK


def cmd_fmt(args) -> int:
    from dslrun.dsl.emit import to_sel, to_yaml
    from dslrun.dsl.load import load_spec, syntax_of
    from dslrun.operators import registry

    for mod in args.plugin:
        registry.load_plugin(mod)
    spec = load_spec(args.spec)
    target = args.to or syntax_of(args.spec)
    text = to_sel(spec) if target == "sel" else to_yaml(spec)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_schema(args) -> int:
    from dslrun.dsl.schema import spec_schema

    print(json.dumps(spec_schema(), indent=2))
    return EXIT_OK


def cmd_cache(args) -> int:
    from dslrun.runtime.cache.open_store import open_store
    from dslrun.runtime.cache.store import ReadOnlyStore

    cdir = cache_dir(args.cache_dir)
    cache = open_store(cdir)
    if args.action == "ls":
        rows = cache.ls()
        print(f"cache {cdir}: {len(rows)} nodes, {sum(r['samples'] for r in rows)} samples")
        for line in cache_table(rows):
            print("  " + line)
        return EXIT_OK
    if not (args.all or args.older_than is not None or args.op):
        print("cache gc: say what to delete: --older-than DAYS, --op NAME, or --all", file=sys.stderr)
        return EXIT_SPEC
    try:
        n = cache.gc(older_than_days=None if args.all else args.older_than, ops=args.op or None)
    except ReadOnlyStore as e:
        print(f"cache gc: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"deleted {n} cached scores")
    return EXIT_OK


def cache_table(rows: list[dict[str, Any]]) -> list[str]:
    """``dslrun cache ls``: one line per cached node, enough to tell two entries of one operator apart."""
    import hashlib

    header = ("node", "operator", "template", "model", "params", "rows", "size")
    body = []
    for r in rows:
        try:
            params = json.loads(r.get("params") or "{}")
        except ValueError:
            params = {}
        template = params.get("template") if isinstance(params, dict) else None
        digest = hashlib.sha256((r.get("params") or "").encode()).hexdigest()[:8]
        model = (r["model"] or "-").split("@")[0]
        body.append((r["node"][:12], f"{r['op']} v{r['version']}", str(template or "-"), model[:48], digest,
                     str(r["samples"]), f"{r['bytes'] / 1e6:.2f} MB"))
    widths = [max(len(x[c]) for x in [header, *body]) for c in range(len(header))]
    return ["  ".join(cell.rjust(w) if c >= 5 else cell.ljust(w) for c, (cell, w) in enumerate(zip(x, widths))).rstrip()
            for x in [header, *body]]


def cmd_run(args) -> int:
    from dslrun.runtime.config import run_settings
    from dslrun.runtime.endpoints import EndpointPolicy, ask_on_terminal
    from dslrun.runtime.run import run_plan

    plan, overrides, text = _compile(args)
    out = args.out or Path("out") / Path(args.spec).stem
    policy = EndpointPolicy(tuple(args.allow_endpoint), args.yes, ask_on_terminal if sys.stdin.isatty() else None)
    return run_plan(plan, overrides, text, out, cache_dir(args.cache_dir), quiet=args.quiet, version=version(),
                    settings=run_settings(args, plan.settings), endpoints=policy)


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per run setting, named as in dslrun.yaml and DSLRUN_* (core/settings.py)."""
    from typing import Literal, get_args, get_origin

    from dslrun.core.settings import RunSettings

    group = parser.add_argument_group(
        "settings", "how and where the run goes; each also DSLRUN_<NAME> or a dslrun.yaml key. Flags win over "
                    "the spec's own settings (engine: ray), which win over the environment, then dslrun.yaml")
    for name, field in RunSettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        help_text = f"{field.description} (default {field.default})"
        if get_origin(field.annotation) is Literal:
            group.add_argument(flag, choices=get_args(field.annotation), help=help_text)
            continue
        kinds = [a for a in get_args(field.annotation) if a is not type(None)] or [field.annotation]
        if get_origin(field.annotation) is list:  # allow_paths, allow_endpoints: their own repeatable flags
            continue
        if kinds[0] is bool:
            group.add_argument(flag, action="store_true", default=None, help=field.description)
        else:
            group.add_argument(flag, type=kinds[0], help=help_text)


def cmd_report(args) -> int:
    from dslrun.runtime.data.out_paths import guard
    from dslrun.runtime.report import render_dir

    try:
        with guard(args.run_dir):
            print(f"report: {render_dir(args.run_dir)}")
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


def cmd_why(args) -> int:
    from dslrun.runtime.lineage.why import WhyError, why

    try:
        print(why(args.run_dir, args.sample))
    except WhyError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


HANDLERS = {"why": cmd_why, "report": cmd_report, "run": cmd_run, "check": cmd_check, "plan": cmd_plan, "explain": cmd_explain, "graph": cmd_graph, "fmt": cmd_fmt,
            "schema": cmd_schema, "cache": cmd_cache}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "run")
    args = _parser().parse_args(argv)
    if not args.command:
        _parser().print_help()
        return EXIT_SPEC
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "httpx2", "httpcore", "openai"):  # one line per HTTP request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from dslrun.runtime.data.pool_files import PoolError

    try:
        return HANDLERS[args.command](args)
    except (ErrorList, SpecError) as e:
        print(str(e), file=sys.stderr)
        return EXIT_SPEC
    except PoolError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    except OSError as e:  # a write outside any step (lock file, run.json, report): name the path
        from dslrun.runtime.cache.unsaved import describe_write_error

        print(f"error: {describe_write_error(e, e.filename or '.')}", file=sys.stderr)
        return EXIT_RUNTIME
    except Exception as e:  # a user never sees a traceback; DSLRUN_DEBUG=1 shows it to whoever fixes it
        if os.environ.get("DSLRUN_DEBUG"):
            raise
        print(internal_error(e), file=sys.stderr)
        return EXIT_INTERNAL


def internal_error(e: BaseException) -> str:
    import traceback

    frames = traceback.extract_tb(e.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    cause = " ".join(str(e).split())[:300]
    return (f"internal error: {type(e).__name__}: {cause}{where}\n"
            f"  this is a bug in dslrun {version()}, not in your spec: please report it with the command and "
            "the spec that caused it (DSLRUN_DEBUG=1 shows the traceback)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
