"""IR → text: the canonical .sel and YAML spellings (``dslrun fmt``).

Formatting is canonical (like a code formatter): parameters first, then run
settings (``engine: ray``), then one step per statement, minimal parentheses,
double-quoted strings. Comments survive as docs above the statement they precede.
"""

from __future__ import annotations

import yaml

from dslrun.core.params import FieldKind
from dslrun.core.render import _NAME, KEYWORDS, expr_text
from dslrun.core.values import DictV, ListV, Lit, Param, Ref, Value
from dslrun.dsl.fields import kind_of
from dslrun.dsl.ir import Setting, Spec, Step

LINE_WIDTH = 100

def _comment(doc: str | None, indent: str = "") -> list[str]:
    if doc is None:
        return []
    return [f"{indent}# {line}".rstrip() if line else f"{indent}#" for line in doc.split("\n")]


def step_sel(step: Step) -> str:
    parts = [i.name for i in step.inputs] + [f"{k}: {expr_text(v)}" for k, v in step.args]
    head = f"{step.name} = {step.op}(" if step.name else f"{step.op}("
    one_line = head + ", ".join(parts) + ")"
    if len(one_line) <= LINE_WIDTH or not parts:
        return one_line
    return head + "\n" + "".join(f"    {p},\n" for p in parts) + ")"


def setting_sel(setting: Setting) -> str:
    """``engine: ray``: a one-word string is written bare, as people write it (it reads back the same)."""
    v = setting.value
    if isinstance(v, Lit) and isinstance(v.value, str) and _NAME.match(v.value) and v.value not in KEYWORDS:
        return f"{setting.name}: {v.value}"
    return f"{setting.name}: {expr_text(v)}"


def to_sel(spec: Spec) -> str:
    out: list[str] = []
    if spec.doc is not None:
        out += _comment(spec.doc) + [""]
    for p in spec.params:
        out += _comment(p.doc) + [f"param {p.name} = {expr_text(p.default)}"]
    if spec.params:
        out.append("")
    for s in spec.settings:
        out += _comment(s.doc) + [setting_sel(s)]
    if spec.settings:
        out.append("")
    for i, step in enumerate(spec.steps):
        if step.doc is not None and i > 0 and out and out[-1] != "":
            out.append("")
        out += _comment(step.doc) + step_sel(step).split("\n")
    if spec.trailer is not None:
        out += [""] + _comment(spec.trailer)
    return "\n".join(out).rstrip("\n") + "\n"


# ---- YAML ----

def _yaml_plain(v: Value, kind: FieldKind):
    """A value as the Python object YAML should carry for it."""
    if kind == FieldKind.EXPR and not (isinstance(v, Lit) and not isinstance(v.value, str)):
        return expr_text(v)
    if isinstance(v, Lit):
        if isinstance(v.value, str) and v.value.startswith("$"):
            return "$" + v.value  # $$ escapes a literal dollar
        return v.value
    if isinstance(v, (Param, Ref)):
        return expr_text(v)
    if isinstance(v, ListV):
        return [_yaml_plain(i, kind) for i in v.items]
    if isinstance(v, DictV):
        return {k: _yaml_plain(i, kind) for k, i in v.items}
    return expr_text(v)


def _dump(x) -> str:
    text = yaml.safe_dump(x, default_flow_style=True, allow_unicode=True, width=10**9, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...")


def to_yaml(spec: Spec) -> str:
    out: list[str] = []
    if spec.doc is not None:
        out += _comment(spec.doc) + [""]
    if spec.params:
        out.append("params:")
        for p in spec.params:
            out += _comment(p.doc, "  ") + [f"  {p.name}: {_dump(_yaml_plain(p.default, FieldKind.VALUE))}"]
    for s in spec.settings:
        out += _comment(s.doc) + [f"{s.name}: {_dump(_yaml_plain(s.value, FieldKind.VALUE))}"]
    out.append("steps:")
    for step in spec.steps:
        out += _comment(step.doc, "  ")
        fields: list[tuple[str, str]] = []
        if step.name:
            fields.append(("name", step.name))
        fields.append(("op", _dump(step.op)))
        if step.inputs:
            names = [i.name for i in step.inputs]
            fields.append(("input", _dump(names[0] if len(names) == 1 else names)))
        for k, v in step.args:
            fields.append((k, _dump(_yaml_plain(v, kind_of(step.op, k)))))
        for j, (k, text) in enumerate(fields):
            out.append(f"  {'- ' if j == 0 else '  '}{k}: {text}")
    if spec.trailer is not None:
        out += [""] + _comment(spec.trailer)
    return "\n".join(out) + "\n"
