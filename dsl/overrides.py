"""``--set STEP.PARAM=VALUE``: any step argument from the command line.

A dotted override names a step and one of its operator's parameters. It replaces
(or adds) that argument in the step before parameters are validated, so it is
checked exactly like an argument written in the spec: unknown steps and
parameters get a did-you-mean hint, values are typed by the operator's Params,
expression fields are parsed as expressions and paths are read from the current
folder (the value's span is the command line).
"""

from __future__ import annotations

from typing import Any

from dslrun.core.errors import CLI, Collector, ErrorList, did_you_mean
from dslrun.core.params import FieldKind, field_kind
from dslrun.core.values import Lit, Value, is_constant
from dslrun.dsl.fields import bare_words_to_strings, strings_to_refs
from dslrun.dsl.parse import parse_expression


def is_step_override(name: str) -> bool:
    return "." in name


def split(name: str) -> tuple[str, str]:
    step, _, key = name.partition(".")
    return step.strip(), key.strip()


def as_kind(name: str, value: Value, kind: FieldKind, errors: Collector) -> Value | None:
    """A command-line value read as the spec would read it in a field of this kind.

    ``--set`` hands over the text (a string ``Lit``); a value built in code is taken as it is.
    """
    if not (isinstance(value, Lit) and isinstance(value.value, str)):
        return value
    text = value.value
    if kind == FieldKind.STEP:
        return strings_to_refs(value)
    try:
        parsed = parse_expression(text, CLI.file)
    except ErrorList as e:
        if kind == FieldKind.EXPR:
            errors.add(CLI, f"--set {name}={text}: not an expression ({e.errors[0].message})",
                       "quote the whole argument, e.g. --set 'step.by=len(output)'")
            return None
        return value
    if kind == FieldKind.EXPR:
        return parsed
    parsed = bare_words_to_strings(parsed)
    return parsed if is_constant(parsed) else value  # `data/a.json` is a division: in a value field, text


def apply(nodes: dict[str, Any], overrides: dict[str, Value], errors: Collector) -> None:
    """Replace the named steps' arguments in ``nodes`` (PlanNodes, operator classes resolved)."""
    for name, value in overrides.items():
        if not is_step_override(name):
            continue
        step_name, key = split(name)
        node = nodes.get(step_name)
        if node is None:
            errors.add(CLI, f"--set {name}: the spec has no step `{step_name}`",
                       did_you_mean(step_name, nodes) or "name a step, e.g. --set STEP.PARAM=VALUE")
            continue
        cls = node.op_cls
        if cls is None:  # unknown operator, reported already
            continue
        kind = field_kind(cls.params_type, key)
        if kind is None:
            fields = list(cls.params_type.model_fields)
            errors.add(CLI, f"--set {name}: `{step_name}` ({cls.name}) has no parameter `{key}`",
                       did_you_mean(key, fields) or "it takes: " + ", ".join(f"`{f}`" for f in fields))
            continue
        read = as_kind(name, value, kind, errors)
        if read is None:
            continue
        read = _at_cli(read)
        args = tuple((k, v) for k, v in node.step.args if k != key) + ((key, read),)
        spans = {**node.step.arg_spans, key: CLI}
        node.step = node.step.model_copy(update={"args": args, "arg_spans": spans})


def _at_cli(v: Value) -> Value:
    """Every node of the value points at the command line (paths are then read from the current folder)."""
    updates: dict[str, Any] = {"span": CLI}
    items = getattr(v, "items", None)
    if isinstance(items, tuple) and items and isinstance(items[0], tuple):
        updates["items"] = tuple((k, _at_cli(i)) for k, i in items)
    elif isinstance(items, tuple):
        updates["items"] = tuple(_at_cli(i) for i in items)
    return v.model_copy(update=updates)
