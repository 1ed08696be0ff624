"""Spec values → parameter values: step references, constants, and input/output paths
checked against what the spec may read and write (``dsl/trust.py``)."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dslrun.core.errors import CLI, Span, did_you_mean
from dslrun.core.params import FieldKind
from dslrun.core.values import ListV, Ref, Value, is_constant, to_python
from dslrun.dsl.trust import input_problem, output_problem

if TYPE_CHECKING:
    from dslrun.dsl.compile import Plan


def span_of(v: Any, fallback: Span | None = None) -> Span:
    """Where a value was written (its own span, else ``fallback``)."""
    return getattr(v, "span", None) or fallback or Span("<spec>")


BAD = object()  # a value that could not be converted (the error is already in the plan)


def convert(plan: Plan, kind: FieldKind, key: str, value: Value, span: Span) -> Any:
    """A spec value as the parameter takes it: a step name, a constant, an allowed path."""
    if kind == FieldKind.EXPR:
        return value
    if kind == FieldKind.STEP:
        if not isinstance(value, Ref) or value.name not in plan.nodes:
            name = value.name if isinstance(value, Ref) else to_python(value) if is_constant(value) else "?"
            plan.errors.add(span, f"`{key}` must name a step; no step is called `{name}`",
                            did_you_mean(str(name), plan.nodes))
            return BAD
        return value.name
    if not is_constant(value) and not (isinstance(value, ListV) and all(isinstance(i, Ref) for i in value.items)):
        plan.errors.add(span, f"`{key}` takes a value, not an expression",
                        "expressions are allowed in expression parameters such as `by` and `where`")
        return BAD
    py = to_python(value)
    from_spec = span_of(value).file != CLI.file  # a value the user typed (--set) is the user's own
    if kind == FieldKind.OUTPUT_PATH and isinstance(py, str) and from_spec and (problem := output_problem(py)):
        plan.errors.add(span_of(value, span), f"`{key}` {problem[0]}", problem[1])
        return BAD
    if kind == FieldKind.INPUT_PATH and isinstance(py, str):
        return _input_path(plan, value, py, span)
    if kind == FieldKind.INPUT_PATH and isinstance(py, list) and isinstance(value, ListV):  # list[InputPath]
        paths = [_input_path(plan, item, p, span) if isinstance(p, str) else p for item, p in zip(value.items, py)]
        return BAD if any(p is BAD for p in paths) else paths
    return py


# Pools that are not files: `memory://` (the Python API's in-memory pools), `hf://` (hub ids).
URI_SCHEMES = ("memory://", "hf://")


def _input_path(plan: Plan, value: Value, py: str, span: Span) -> Any:
    if py.startswith(URI_SCHEMES):  # `load` checks these when it sniffs the pool's columns
        return py
    from_cli = span_of(value).file == CLI.file
    base = plan.cwd if from_cli else plan.spec_dir
    allowed = [plan.spec_dir, plan.cwd, *plan.trust.allow_paths]
    try:
        if any(c in py for c in "*?["):  # a glob of shards: its fixed part must be allowed, and it must match
            pattern = base / py if not Path(py).is_absolute() else Path(py)
            cut = next(i for i, part in enumerate(pattern.parts) if any(c in part for c in "*?["))
            outside = None if from_cli else input_problem(Path(*pattern.parts[:cut]).resolve(), allowed)
            if outside:
                plan.errors.add(span_of(value, span), *outside)
                return BAD
            if not any(Path(f).is_file() for f in glob.iglob(str(pattern), recursive=True)):
                plan.errors.add(span_of(value, span), f"no file matches {py} (looked for {_shown(pattern, plan.cwd)})",
                                "paths in a spec are relative to the spec's folder; on the command line, to the "
                                "current one")
                return BAD
            return str(pattern)
        path = (base / py).resolve()  # symlinks too: a link inside the folder may point anywhere
        outside = None if from_cli else input_problem(path, allowed)
        found = outside is None and path.exists()
    except (OSError, ValueError) as e:  # a NUL byte, a name too long, a symlink loop
        plan.errors.add(span_of(value, span), f"not a usable path: {getattr(e, 'strerror', None) or e}")
        return BAD
    if outside:
        plan.errors.add(span_of(value, span), *outside)
        return BAD
    if not found:
        plan.errors.add(span_of(value, span), f"file not found: {py} (looked for {_shown(path, plan.cwd)})",
                        "paths in a spec are relative to the spec's folder; on the command line, to the current one")
        return BAD
    return str(path)


def _shown(path: Path, cwd: Path) -> str:
    try:
        return os.path.relpath(path, cwd)
    except ValueError:  # another drive on Windows
        return str(path)
