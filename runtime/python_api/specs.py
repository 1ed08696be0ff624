"""``check``, ``compile`` and ``run`` from Python: a spec (a path or its text), parameters as
Python values, and a pool that may be a path or an object in memory."""

from __future__ import annotations

import builtins
import re
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from dslrun.core.errors import CLI, ErrorList, SpecError

if TYPE_CHECKING:
    from dslrun.dsl.compile import Plan
    from dslrun.runtime.python_api.result import Result

SPEC_SUFFIXES = (".sel", ".yaml", ".yml")
_TEXT_FILE = "<spec>"
_API = CLI  # Python arguments are overrides, like --set: relative paths are from the current folder


def _read_spec(spec: str | Path, syntax: str | None) -> tuple[Any, str]:
    """(IR, text) of a spec given as a file path or as its text."""
    from dslrun.dsl.load import load_spec_text, parse_text

    if isinstance(spec, Path) or ("\n" not in spec and spec.strip().endswith(SPEC_SUFFIXES)):
        return load_spec_text(spec)
    return parse_text(spec, _TEXT_FILE, syntax or _guess_syntax(spec)), spec


def _guess_syntax(text: str) -> str:
    """YAML when the first statement is a top-level ``key:`` (``params:``, ``steps:``, a setting)
    and nothing looks like a ``.sel`` statement (``param x =`` or ``name = op(``)."""
    sel = re.search(r"^\s*(param\s+\w+\s*=|\w+\s*=\s*[\w-]+\(|[\w-]+\()", text, re.M)
    return "sel" if sel else "yaml"


def _overrides(spec_ir: Any, values: Mapping[str, Any] | None, pool: Any) -> tuple[dict[str, Any], str | None]:
    """Spec parameters as the compiler takes them, and the ``memory://`` name of an in-memory pool."""
    from dslrun.core.values import from_python
    from dslrun.runtime.data import memory_pools

    values = dict(values or {})
    memory = None
    if pool is not None:
        if not any(p.name == "pool" for p in spec_ir.params):
            raise ErrorList([SpecError(_API, "pool=: the spec has no parameter `pool`",
                                       "declare `param pool = \"...\"` and read it with `load(path: $pool)`")])
        if isinstance(pool, (str, Path)):
            values["pool"] = str(pool)
        else:
            memory = memory_pools.register(memory_pools.as_memory_pool(pool))
            values["pool"] = memory
    return {k: from_python(v, _API) for k, v in values.items()}, memory


class _Flags(SimpleNamespace):
    """``settings=`` as the flags ``run_settings`` reads: unknown names are refused there."""

    def __init__(self, given: Mapping[str, Any]):
        from dslrun.core.settings import RunSettings

        unknown = sorted(set(given) - set(RunSettings.model_fields))
        if unknown:
            from dslrun.core.errors import did_you_mean

            hint = did_you_mean(unknown[0], RunSettings.model_fields)
            raise ErrorList([SpecError(_API, f"settings=: unknown setting `{unknown[0]}`", hint)])
        super().__init__(**given)


class CompiledPlan:
    """A compiled spec: what ``dslrun check|explain|graph`` see; ``run()`` executes it."""

    def __init__(self, plan: Plan, overrides: dict[str, Any], text: str, memory_pool: str | None):
        self.plan, self.overrides, self.text = plan, overrides, text
        if memory_pool is not None:  # the in-memory pool lives as long as the plan that reads it
            from dslrun.runtime.data import memory_pools

            weakref.finalize(self, memory_pools.unregister, memory_pool)

    @property
    def steps(self) -> list[str]:
        return list(self.plan.order)

    def explain(self) -> str:
        """The feasibility profile, as ``dslrun explain`` prints it."""
        from dslrun.dsl.explain import profile, render

        return render(self.plan, profile(self.plan))

    def profile(self) -> dict[str, Any]:
        from dslrun.dsl.explain import profile

        return profile(self.plan).as_dict()

    def graph(self, format: str = "mermaid") -> str:
        """The DAG as Mermaid (default) or Graphviz ``dot`` text, as ``dslrun graph`` prints it."""
        from dslrun.dsl.graph import to_dot, to_mermaid

        if format not in ("mermaid", "dot"):
            raise ValueError(f"format must be mermaid or dot, not {format!r}")
        return to_mermaid(self.plan) if format == "mermaid" else to_dot(self.plan)

    def run(self, out: str | Path | None = None, *, cache_dir: str | Path | None = None,
            settings: Mapping[str, Any] | None = None, progress: bool = False, yes: bool = False) -> Result:
        """Execute the plan (see ``dslrun.run``)."""
        from dslrun.runtime.cli import cache_dir as default_cache_dir
        from dslrun.runtime.cli import version
        from dslrun.runtime.config import run_settings
        from dslrun.runtime.endpoints import EndpointPolicy
        from dslrun.runtime.python_api.result import Result, output_folder
        from dslrun.runtime.run import execute_run

        # settings= are the command line's flags: they win over the spec, DSLRUN_* and dslrun.yaml
        resolved = run_settings(_Flags(settings or {}), self.plan.settings)
        folder, cleanup = output_folder(out)
        done = execute_run(self.plan, self.overrides, self.text, folder,
                           default_cache_dir(Path(cache_dir) if cache_dir else None), progress=progress,
                           version=version(), settings=resolved, handle_sigint=False,
                           endpoints=EndpointPolicy(yes=yes))  # a notebook is never asked: refused or allowed
        return Result(self, done, cleanup)

    def __repr__(self) -> str:
        return f"<dslrun plan {self.plan.spec.file}: {' → '.join(self.plan.order)}>"


def compile(spec: str | Path, *, set: Mapping[str, Any] | None = None, pool: Any = None,
            syntax: str | None = None, plugins: builtins.list[str] | tuple[str, ...] = ()) -> CompiledPlan:
    """Compile a spec (a ``.sel``/``.yaml`` path, or the spec's text) with parameters ``set``
    and an optional ``pool`` (a path, a list of dicts, a pandas DataFrame, a pyarrow Table or
    a datasets.Dataset; the spec must read it as ``param pool``). Raises ``ErrorList`` (its
    ``.errors`` are ``SpecError``s) when the spec has errors."""
    from dslrun.dsl.compile import compile_spec
    from dslrun.operators import registry

    for mod in plugins:
        registry.load_plugin(mod)
    spec_ir, text = _read_spec(spec, syntax)
    overrides, memory = _overrides(spec_ir, set, pool)
    try:
        plan = compile_spec(spec_ir, overrides)
    except BaseException:
        if memory is not None:
            from dslrun.runtime.data import memory_pools

            memory_pools.unregister(memory)
        raise
    return CompiledPlan(plan, overrides, text, memory)


def check(spec: str | Path, *, set: Mapping[str, Any] | None = None, pool: Any = None,
          syntax: str | None = None) -> builtins.list[SpecError]:
    """Every static error of a spec, as ``SpecError`` objects (``.span`` with file, line and
    column, ``.message``, ``.hint``; ``str()`` renders them like ``dslrun check``); empty when
    the spec is fine. Computes nothing."""
    try:
        compile(spec, set=set, pool=pool, syntax=syntax)
    except ErrorList as e:
        return sorted(e.errors, key=lambda x: (x.span.file, x.span.line, x.span.col))
    except SpecError as e:
        return [e]
    return []


def run(spec: str | Path, *, set: Mapping[str, Any] | None = None, pool: Any = None,
        out: str | Path | None = None, cache_dir: str | Path | None = None,
        settings: Mapping[str, Any] | None = None, progress: bool = False, syntax: str | None = None,
        yes: bool = False) -> Result:
    """Compile and run a spec, as ``dslrun run`` does, and return a ``Result``.

    ``out=None`` writes the run's files (subset, scores, lock file, report) to a temporary
    folder removed with the result; the score cache is the CLI's (``cache_dir``, else
    ``$DSLRUN_CACHE_DIR``, else ``.dslrun``), so the CLI and notebooks share cached scores.
    ``settings`` are run settings by their dslrun.yaml names (``{"engine": "ray",
    "workers": 2}``), taken as the CLI takes its flags.

    Endpoints: a step calling a server that is not loopback, not a URL in ``set``, not in
    ``settings["allow_endpoints"]`` or dslrun.yaml's ``allow_endpoints`` and not
    ``$OPENAI_BASE_URL`` raises ``EndpointNotAllowed`` before anything is sent (its message
    gives the plan's calls and cost); nothing prompts. ``yes=True`` allows every endpoint."""
    plan = compile(spec, set=set, pool=pool, syntax=syntax)
    return plan.run(out, cache_dir=cache_dir, settings=settings, progress=progress, yes=yes)
