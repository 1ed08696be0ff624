"""The intermediate representation that both front-ends (.sel and YAML) produce.

A spec is parameters, settings and steps; their values are value trees
(``core/values.py``, shared with the expression evaluator). Spans ride along for error messages but are excluded
from comparisons and dumps, so ``a.model_dump() == b.model_dump()`` means the
two specs say the same thing whichever spelling they came from.
"""

from __future__ import annotations

from pydantic import Field

from dslrun.core.errors import Span
from dslrun.core.values import Node, Ref, Value


class ParamDef(Node):
    name: str
    default: Value
    doc: str | None = None


class Setting(Node):
    """``name: value`` at the top level: where the spec runs (``engine: ray``), checked by compile."""

    name: str
    value: Value
    doc: str | None = None
    name_span: Span | None = Field(default=None, exclude=True, repr=False)


class Step(Node):
    """One operator call. ``name`` is None for an anonymous step (e.g. a final ``save``)."""

    name: str | None
    op: str
    inputs: tuple[Ref, ...] = ()
    args: tuple[tuple[str, Value], ...] = ()
    doc: str | None = None
    op_span: Span | None = Field(default=None, exclude=True, repr=False)
    arg_spans: dict[str, Span] = Field(default_factory=dict, exclude=True, repr=False)

    def arg(self, key: str) -> Value | None:
        return dict(self.args).get(key)

    @property
    def label(self) -> str:
        return self.name or f"{self.op}@{self.span.line if self.span else '?'}"


class Spec(Node):
    doc: str | None = None
    params: tuple[ParamDef, ...] = ()
    settings: tuple[Setting, ...] = ()
    steps: tuple[Step, ...] = ()
    trailer: str | None = None
    file: str = Field(default="<spec>", exclude=True)

    def param_defaults(self) -> dict[str, ParamDef]:
        return {p.name: p for p in self.params}
