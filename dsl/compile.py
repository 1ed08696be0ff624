"""IR → a validated DAG of operator nodes. Each pass is a small function ``Plan -> Plan``.

Passes run in order (``PASSES``); every pass adds its problems to the plan's
error collector and skips only the nodes an earlier pass rejected, so one
``dslrun check`` reports every problem in the spec at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
from pydantic import ValidationError

from dslrun.core.errors import CLI, Collector, did_you_mean
from dslrun.core.expr import infer
from dslrun.core.params import field_kind
from dslrun.core.values import DictV, Lit, Param, Value, is_constant, to_python, walk
from dslrun.dsl import overrides as step_overrides
from dslrun.dsl.ir import Setting, Spec, Step
from dslrun.dsl.param_values import BAD, convert
from dslrun.dsl.param_values import span_of as _span
from dslrun.dsl.settings import SETTINGS, setting_problem
from dslrun.dsl.trust import Trust, code_problem
from dslrun.operators import registry
from dslrun.operators.base import Operator


@dataclass
class PlanNode:
    name: str
    step: Step
    op_cls: type[Operator] | None = None
    op: Operator | None = None
    inputs: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.op is not None


@dataclass
class Plan:
    spec: Spec
    overrides: dict[str, Value] = field(default_factory=dict)
    cwd: Path = field(default_factory=Path.cwd)
    trust: Trust = field(default_factory=Trust)
    params: dict[str, Value] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # the spec's run settings, checked: {"engine": "ray"}
    nodes: dict[str, PlanNode] = field(default_factory=dict)
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    order: list[str] = field(default_factory=list)
    errors: Collector = field(default_factory=Collector)

    @property
    def spec_dir(self) -> Path:
        return Path(self.spec.file).resolve().parent

    def replace(self, **kw: Any) -> Plan:
        return dataclasses.replace(self, **kw)


# ---- passes ----

def resolve_params(plan: Plan) -> Plan:
    """Spec parameters with command-line overrides applied and type-checked against defaults."""
    params: dict[str, Value] = {}
    for p in plan.spec.params:
        if p.name in params:
            plan.errors.add(_span(p), f"parameter `{p.name}` is defined twice")
        if not is_constant(p.default) or _has_param(p.default):
            plan.errors.add(_span(p.default, p.span), f"default of `{p.name}` must be a literal value",
                            "use a number, a string, true/false, null or a list of them")
            params[p.name] = Lit(value=None, span=p.default.span)  # reported; uses of it need no echo
            continue
        params[p.name] = p.default
    for name, value in plan.overrides.items():
        if step_overrides.is_step_override(name):  # STEP.PARAM, applied by `apply_step_overrides`
            continue
        if name not in params:
            plan.errors.add(CLI, f"--set {name}: the spec has no parameter `{name}`",
                            did_you_mean(name, params) or "declare it with `param NAME = default`")
            continue
        default = to_python(params[name]) if is_constant(params[name]) else None
        given = to_python(value)
        if not _compatible(default, given):
            plan.errors.add(CLI, f"--set {name}={given!r}: expected {type(default).__name__} like the default {default!r}")
            continue
        if isinstance(default, float) and isinstance(given, int) and not isinstance(given, bool):
            value = Lit(value=float(given), span=value.span)
        params[name] = value
    return plan.replace(params=params)


def _has_param(v: Value) -> bool:
    return any(isinstance(n, Param) for n in walk(v))


def _compatible(default: Any, given: Any) -> bool:
    if default is None or given is None:
        return True
    if isinstance(default, bool) or isinstance(given, bool):
        return isinstance(default, bool) and isinstance(given, bool)
    if isinstance(default, (int, float)):
        return isinstance(given, (int, float)) and (isinstance(default, float) or isinstance(given, int))
    return type(default) is type(given)


def substitute(v: Value, params: dict[str, Value], errors: Collector) -> Value:
    if isinstance(v, Param):
        if v.name not in params:
            errors.add(_span(v), f"unknown parameter `${v.name}`",
                       did_you_mean(v.name, params) or "declare it with `param NAME = default`")
            return Lit(value=None, span=v.span)
        return params[v.name]
    updates: dict[str, Any] = {}
    for name in ("items", "args", "operand", "left", "right"):
        child = getattr(v, name, None)
        if child is None:
            continue
        if name == "items" and isinstance(v, DictV):
            updates[name] = tuple((k, substitute(i, params, errors)) for k, i in child)
        elif isinstance(child, tuple):
            updates[name] = tuple(substitute(i, params, errors) for i in child)
        else:
            updates[name] = substitute(child, params, errors)
    return v.model_copy(update=updates) if updates else v


def resolve_settings(plan: Plan) -> Plan:
    """The spec's run settings (``engine: ray``) as plain values, with ``$params`` substituted."""
    settings: dict[str, Any] = {}
    first: dict[str, Setting] = {}
    for s in plan.spec.settings:
        where = s.name_span or _span(s)
        if s.name not in SETTINGS:
            plan.errors.add(where, f"unknown setting `{s.name}`", did_you_mean(s.name, SETTINGS))
            continue
        if s.name in first:
            earlier = first[s.name].span
            line = earlier.line if earlier else "?"
            plan.errors.add(where, f"setting `{s.name}` is given twice (first at line {line})", "keep one of them")
            continue
        first[s.name] = s
        known = len(plan.errors.errors)
        value = substitute(s.value, plan.params, plan.errors)
        if len(plan.errors.errors) > known:  # an unknown `$param`, reported already
            continue
        at = _span(s.value, where)  # the `$param` in the spec, even when --set gave its value
        if not is_constant(value) or _has_param(value):
            plan.errors.add(at, f"setting `{s.name}` takes a value, not an expression",
                            f"e.g. `{SETTINGS[s.name].example}`")
            continue
        py = to_python(value)
        problem = setting_problem(s.name, py)
        if problem is not None:
            message, hint = problem
            via = f" (the value of `${s.value.name}`)" if isinstance(s.value, Param) else ""
            plan.errors.add(at, message + via, hint)
            continue
        settings[s.name] = py
    return plan.replace(settings=settings)


def name_nodes(plan: Plan) -> Plan:
    nodes: dict[str, PlanNode] = {}
    for i, step in enumerate(plan.spec.steps, 1):
        name = step.name or f"{step.op}_{i}"
        if name in nodes:
            first = nodes[name].step.span
            plan.errors.add(_span(step), f"step `{name}` is defined twice (first at line {first.line if first else '?'})",
                            "give each step its own name")
            continue
        nodes[name] = PlanNode(name=name, step=step)
    return plan.replace(nodes=nodes)


def resolve_ops(plan: Plan) -> Plan:
    for node in plan.nodes.values():
        cls = registry.get(node.step.op)
        if cls is None:
            plan.errors.add(node.step.op_span or _span(node.step), f"unknown operator `{node.step.op}`",
                            did_you_mean(node.step.op, registry.names()))
        node.op_cls = cls
    return plan


def apply_step_overrides(plan: Plan) -> Plan:
    """``--set STEP.PARAM=VALUE`` replaces that step's argument; `validate_params` then checks it."""
    step_overrides.apply(plan.nodes, plan.overrides, plan.errors)
    return plan


def link_inputs(plan: Plan) -> Plan:
    for node in plan.nodes.values():
        cls = node.op_cls
        for ref in node.step.inputs:
            if ref.name not in plan.nodes:
                plan.errors.add(_span(ref), f"unknown step `{ref.name}`",
                                did_you_mean(ref.name, [n for n in plan.nodes if n != node.name]))
            node.inputs.append(ref.name)
        if cls is None:
            continue
        n = len(node.step.inputs)
        want = cls.n_inputs
        if want == 0 and n:
            plan.errors.add(_span(node.step.inputs[0]), f"`{cls.name}` reads no input step, got {n}")
        elif want is None and n == 0:
            plan.errors.add(node.step.op_span or _span(node.step), f"`{cls.name}` needs at least one input step",
                            f"write {cls.name}(step_name, ...)")
        elif want and n != want:
            plan.errors.add(node.step.op_span or _span(node.step),
                            f"`{cls.name}` takes {want} input step{'s' if want > 1 else ''}, got {n}",
                            f"write {cls.name}(step_name, ...)")
    return plan


def validate_params(plan: Plan) -> Plan:
    """Build each operator's Params from the spec: unknown keys, types and ranges."""
    for node in plan.nodes.values():
        cls = node.op_cls
        if cls is None:
            continue
        step = node.step
        values: dict[str, Any] = {}
        fields = cls.params_type.model_fields
        bad = False
        for key, raw in step.args:
            span = step.arg_spans.get(key) or _span(raw, step.span)
            kind = field_kind(cls.params_type, key)
            if kind is None:
                plan.errors.add(span, f"unknown parameter `{key}` for `{cls.name}`",
                                did_you_mean(key, fields) or _param_list(cls))
                bad = True
                continue
            value = substitute(raw, plan.params, plan.errors)
            converted = convert(plan, kind, key, value, span)
            if converted is BAD:
                bad = True
                continue
            if converted and _names_code(cls, key) and _span(value).file != CLI.file and not plan.trust.allow_code:
                plan.errors.add(span, *code_problem(key))
                bad = True
                continue
            values[key] = converted
        if bad:
            continue
        try:
            node.op = cls(cls.params_type(**values))
        except ValidationError as e:
            for err in e.errors():
                key = str(err["loc"][0]) if err["loc"] else ""
                span = step.arg_spans.get(key) or step.op_span or _span(step)
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "missing":
                    plan.errors.add(span, f"`{cls.name}` needs parameter `{key}`", _param_hint(cls, key))
                else:
                    where = f"`{key}`: " if key else ""
                    if span is CLI:  # the value came from `--set STEP.PARAM=...`
                        where = f"--set {node.name}.{key}: "
                    plan.errors.add(span, f"{where}{msg}", _param_hint(cls, key))
    return plan


def _names_code(cls: type[Operator], key: str) -> bool:
    """Fields marked ``json_schema_extra={"names_code": True}`` name Python code to import."""
    f = cls.params_type.model_fields.get(key)
    extra = f.json_schema_extra if f is not None else None
    return isinstance(extra, dict) and bool(extra.get("names_code"))


def _param_list(cls: type[Operator]) -> str:
    return f"`{cls.name}` takes: " + ", ".join(f"`{k}`" for k in cls.params_type.model_fields)


def _param_hint(cls: type[Operator], key: str) -> str | None:
    f = cls.params_type.model_fields.get(key)
    return f.description if f is not None and f.description else None


def build_graph(plan: Plan) -> Plan:
    g: nx.DiGraph[str] = nx.DiGraph()
    for node in plan.nodes.values():
        g.add_node(node.name)
    for node in plan.nodes.values():
        extra = node.op.step_refs() if node.op else []
        for src in [*node.inputs, *extra]:
            if src in plan.nodes:
                g.add_edge(src, node.name)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return plan.replace(graph=g, order=list(nx.lexicographical_topological_sort(g, key=_position(plan))))
    path = [edge[0] for edge in cycle] + [cycle[0][0]]
    first = plan.nodes[path[0]].step
    plan.errors.add(_span(first), "found a cycle: " + " --> ".join(path), "a step cannot depend on its own output")
    return plan.replace(graph=g, order=[])


def _position(plan: Plan):
    index = {name: i for i, name in enumerate(plan.nodes)}
    return lambda name: index[name]


def check_columns(plan: Plan) -> Plan:
    """Every column an expression reads is produced by some step before it."""
    skipped: set[str] = set()
    for name in plan.order:
        node = plan.nodes[name]
        # A node whose input failed to validate, or was skipped for that reason, would only echo
        # that error (a missing pool file is not also an `unknown column` two steps later); skip it.
        if node.op is None or any(not plan.nodes[i].ok or i in skipped for i in node.inputs if i in plan.nodes):
            skipped.add(name)
            continue
        inputs = [plan.nodes[i].columns for i in node.inputs if i in plan.nodes]
        if not _arity_ok(node.op, len(node.inputs)) or len(inputs) != len(node.inputs):
            continue  # link_inputs said so already
        for key, expr in node.op.reads().items():
            if expr is not None:
                _infer(plan, node.step, key, expr, inputs[0] if inputs else {})
        try:
            node.columns = node.op.output_columns(inputs)
        except Exception as e:  # an operator's column logic failing is a spec problem to show, not a crash
            plan.errors.add(node.step.op_span or _span(node.step), str(e))
    return plan


def _arity_ok(op: Operator, n: int) -> bool:
    want = type(op).n_inputs
    return n >= 1 if want is None else n == want


def _infer(plan: Plan, step: Step, key: str, expr: Value, columns: dict[str, str]) -> None:
    """Type-check one expression; a default the operator wrote (no position in the spec) is blamed
    on the step, naming the parameter."""
    found = Collector()
    infer(expr, columns, found)
    for e in found.errors:
        if e.span.line:
            plan.errors.extend([e])
        else:
            at = step.arg_spans.get(key) or step.op_span or _span(step)
            plan.errors.add(at, f"{e.message} (read by `{key}`, which this step does not set)", e.hint)


PASSES = (resolve_params, resolve_settings, name_nodes, resolve_ops, apply_step_overrides, link_inputs,
          validate_params, build_graph, check_columns)


def compile_spec(spec: Spec, overrides: dict[str, Value] | None = None, cwd: Path | None = None,
                 trust: Trust | None = None) -> Plan:
    plan = Plan(spec=spec, overrides=dict(overrides or {}), cwd=cwd or Path.cwd(), trust=trust or Trust())
    for p in PASSES:
        plan = p(plan)
    plan.errors.raise_if_any()
    return plan


def spec_hash(text: str, overrides: dict[str, Any]) -> str:
    h = hashlib.sha256(text.encode("utf-8"))
    h.update(repr(sorted((k, repr(v)) for k, v in overrides.items())).encode())
    return h.hexdigest()
