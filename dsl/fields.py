"""How to read a spec value, from the operator's Params field type.

Both front-ends use this so that ``by: len(output)`` in .sel and
``by: "len(output)"`` in YAML become the same IR: expression fields are parsed,
step fields become references, and bare words in plain fields are strings.
"""

from __future__ import annotations

from dslrun.core.params import FieldKind, field_kind
from dslrun.core.values import Binary, DictV, ListV, Lit, Ref, Value
from dslrun.dsl.ir import Spec, Step
from dslrun.operators import registry


def kind_of(op: str, key: str) -> FieldKind:
    cls = registry.get(op)
    if cls is None:
        return FieldKind.VALUE
    return field_kind(cls.params_type, key) or FieldKind.VALUE


def _hyphen_word(v: Value) -> str | None:
    """``tag-coverage`` parses as a subtraction of two names; in a value field it is one word."""
    if isinstance(v, Ref):
        return v.name
    if isinstance(v, Binary) and v.op == "-":
        left, right = _hyphen_word(v.left), _hyphen_word(v.right)
        if left is not None and right is not None:
            return f"{left}-{right}"
    return None


def bare_words_to_strings(v: Value) -> Value:
    """``method: deita`` means the string "deita" when the field is not an expression."""
    word = _hyphen_word(v)
    if word is not None:
        return Lit(value=word, span=v.span)
    if isinstance(v, ListV):
        return v.model_copy(update={"items": tuple(bare_words_to_strings(i) for i in v.items)})
    if isinstance(v, DictV):
        return v.model_copy(update={"items": tuple((k, bare_words_to_strings(i)) for k, i in v.items)})
    return v


def strings_to_refs(v: Value) -> Value:
    if isinstance(v, Lit) and isinstance(v.value, str):
        return Ref(name=v.value, span=v.span)
    if isinstance(v, ListV):
        return v.model_copy(update={"items": tuple(strings_to_refs(i) for i in v.items)})
    return v


def normalize_sel(spec: Spec) -> Spec:
    """Canonical IR for a parsed .sel spec."""
    params = tuple(p.model_copy(update={"default": bare_words_to_strings(p.default)}) for p in spec.params)
    # `engine: ray` is the word "ray", as YAML reads it.
    settings = tuple(s.model_copy(update={"value": bare_words_to_strings(s.value)}) for s in spec.settings)
    steps = []
    for step in spec.steps:
        args = []
        for key, value in step.args:
            kind = kind_of(step.op, key)
            if kind == FieldKind.STEP:
                value = strings_to_refs(value)
            elif kind != FieldKind.EXPR:
                value = bare_words_to_strings(value)
            args.append((key, value))
        steps.append(step.model_copy(update={"args": tuple(args)}))
    return spec.model_copy(update={"params": params, "settings": settings, "steps": tuple(steps)})


def normalize_step_args(step: Step) -> Step:
    return normalize_sel(Spec(steps=(step,))).steps[0]
