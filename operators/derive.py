"""``derive``: a new column from an expression over existing ones."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from dslrun.core.columns import Columns
from dslrun.core.context import RunContext
from dslrun.core.errors import Collector
from dslrun.core.expr import evaluate, infer
from dslrun.core.params import Expr, Params
from dslrun.operators.base import TableOperator
from dslrun.operators.registry import register
from dslrun.runtime.data.table import Table, as_column


class DeriveParams(Params):
    column: str = Field(description="name of the new (or replaced) column")
    expr: Expr = Field(description="expression over columns, e.g. `quality * complexity`")

    @field_validator("column")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v) or v.startswith("_"):
            raise ValueError(f"{v!r} is not a column name (letters, digits, _; not starting with _)")
        return v


@register
class Derive(TableOperator[DeriveParams]):
    """Add `column` = `expr`, evaluated vectorised over the table."""

    name = "derive"

    def reads(self):
        return {"expr": self.params.expr}

    def output_columns(self, inputs: list[Columns]) -> Columns:
        cols = dict(inputs[0])
        cols[self.params.column] = infer(self.params.expr, inputs[0], Collector())
        return cols

    def run(self, inputs: list[Table], ctx: RunContext) -> Table:
        (table,) = inputs
        values = evaluate(self.params.expr, table)
        return table.with_columns({self.params.column: as_column(values)})
