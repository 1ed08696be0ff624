"""Value trees: what a spec's values and expressions are, in both spellings.

Literals, lists, mappings, ``$param`` references, bare references (a column, a step,
or an enum word, decided by the operator's field type) and expressions. Spans ride
along for error messages but are excluded from comparisons and dumps. They live in
the core layer because operators evaluate them (``core/expr.py``) and the language
builds them (``dsl/``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from dslrun.core.errors import Span

Scalar = Union[str, int, float, bool, None]


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    span: Span | None = Field(default=None, exclude=True, repr=False)

    # Two nodes are equal when they say the same thing, wherever they were written.
    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self.model_dump())))


class Lit(Node):
    kind: Literal["lit"] = "lit"
    value: Scalar


class ListV(Node):
    kind: Literal["list"] = "list"
    items: tuple[Value, ...]


class DictV(Node):
    kind: Literal["dict"] = "dict"
    items: tuple[tuple[str, Value], ...]


class Param(Node):
    """``$name``: a spec-level parameter, substituted before validation."""

    kind: Literal["param"] = "param"
    name: str


class Ref(Node):
    """A bare identifier: a column inside expressions, a step for step-typed fields."""

    kind: Literal["ref"] = "ref"
    name: str


class Call(Node):
    """A function call inside an expression, e.g. ``len(output)``."""

    kind: Literal["call"] = "call"
    func: str
    args: tuple[Value, ...]


class Unary(Node):
    kind: Literal["unary"] = "unary"
    op: Literal["-", "not"]
    operand: Value


class Binary(Node):
    kind: Literal["binary"] = "binary"
    op: str  # + - * / // % ** == != < <= > >= and or in not in
    left: Value
    right: Value


Value = Annotated[
    Lit | ListV | DictV | Param | Ref | Call | Unary | Binary, Field(discriminator="kind")
]

for _cls in (ListV, DictV, Call, Unary, Binary):
    _cls.model_rebuild()


def is_constant(v: Any) -> bool:
    """True for values that need no columns: literals, lists/dicts of them, params."""
    if isinstance(v, (Lit, Param)):
        return True
    if isinstance(v, ListV):
        return all(is_constant(i) for i in v.items)
    if isinstance(v, DictV):
        return all(is_constant(i) for _, i in v.items)
    return False


def to_python(v: Value) -> Any:
    """The plain Python value of a constant (params must already be substituted)."""
    if isinstance(v, Lit):
        return v.value
    if isinstance(v, ListV):
        return [to_python(i) for i in v.items]
    if isinstance(v, DictV):
        return {k: to_python(i) for k, i in v.items}
    if isinstance(v, Ref):
        return v.name
    raise TypeError(f"not a constant: {v!r}")


def from_python(x: Any, span: Span | None = None) -> Value:
    if isinstance(x, (list, tuple)):
        return ListV(items=tuple(from_python(i, span) for i in x), span=span)
    if isinstance(x, dict):
        return DictV(items=tuple((str(k), from_python(i, span)) for k, i in x.items()), span=span)
    return Lit(value=x, span=span)


def walk(v: Value):
    """Every node of a value tree, parents first."""
    yield v
    children: tuple = ()
    if isinstance(v, ListV):
        children = v.items
    elif isinstance(v, DictV):
        children = tuple(i for _, i in v.items)
    elif isinstance(v, Call):
        children = v.args
    elif isinstance(v, Unary):
        children = (v.operand,)
    elif isinstance(v, Binary):
        children = (v.left, v.right)
    for c in children:
        yield from walk(c)
