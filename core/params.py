"""How a spec value is read into an operator's parameters.

Every operator's parameters are a frozen pydantic ``Params`` (``extra="forbid"``).
Field markers tell the front-ends and the compiler how to read a spec value:
``Expr`` (an expression over columns), ``StepRef`` (another step), ``InputPath`` (a
file that must exist, relative to the spec), ``OutputPath`` (relative to the run's
output directory), ``EnvVar`` (the *name* of an environment variable holding a
secret; checked when run, not when checked). ``NoCache`` marks a field that changes
how, not what, is computed, and ``ColumnName`` one that names an output column; both
stay out of cache keys (``core/keys.py``). ``KeyedWhenSet`` marks a field added after
entries were cached: it enters the key only when it differs from its default.
"""

from __future__ import annotations

import enum
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict


class FieldKind(str, enum.Enum):
    EXPR = "expr"
    STEP = "step"
    INPUT_PATH = "input_path"
    OUTPUT_PATH = "output_path"
    ENV = "env"
    VALUE = "value"


Expr = Annotated[Any, FieldKind.EXPR]
StepRef = Annotated[str, FieldKind.STEP]
InputPath = Annotated[str, FieldKind.INPUT_PATH]
OutputPath = Annotated[str, FieldKind.OUTPUT_PATH]
EnvVar = Annotated[str, FieldKind.ENV]


class Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class NoCache:
    """Marks a Params field that changes how, not what, is computed (kept out of cache keys)."""


class ColumnName:
    """Marks a Params field that names an output column: where a result is put, not what was
    computed. Kept out of cache keys; the cache stores values under the default names."""


class KeyedWhenSet:
    """Marks a Params field added to an operator whose values are already cached: it enters the
    cache key only when it differs from its default, so entries computed before it existed
    (which the default reproduces) stay valid and every other value gets its own key."""


def marked(params_cls: type[BaseModel], key: str, marker: type) -> bool:
    """Whether field ``key`` carries ``marker`` (``Annotated[..., NoCache()]`` or the class itself)."""
    return any(isinstance(m, marker) or m is marker for m in params_cls.model_fields[key].metadata)


def field_kind(params_cls: type[BaseModel], key: str) -> FieldKind | None:
    """How a spec value for ``key`` is to be read; None when the key is unknown."""
    field = params_cls.model_fields.get(key)
    if field is None:
        return None
    for meta in field.metadata:
        if isinstance(meta, FieldKind):
            return meta
    return _kind_in(field.annotation) or FieldKind.VALUE


def _kind_in(annotation: Any) -> FieldKind | None:
    """The marker inside ``Expr | None``, ``list[StepRef]`` and the like."""
    for meta in getattr(annotation, "__metadata__", ()):
        if isinstance(meta, FieldKind):
            return meta
    for arg in typing.get_args(annotation):
        kind = _kind_in(arg)
        if kind is not None:
            return kind
    return None
