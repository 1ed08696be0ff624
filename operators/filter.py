"""``filter``: keep the rows where an expression holds."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from dslrun.core.context import RunContext
from dslrun.core.expr import evaluate
from dslrun.core.params import Expr, Params
from dslrun.operators.base import TableOperator
from dslrun.operators.registry import register
from dslrun.runtime.data.table import Table


class FilterParams(Params):
    where: Expr = Field(description="a true/false expression over columns, e.g. `ifd < 1 and len(output) > 10`")


@register
class Filter(TableOperator[FilterParams]):
    """Keep rows where `where` is true (missing values count as false); order is kept."""

    name = "filter"

    def reads(self):
        return {"where": self.params.where}

    def run(self, inputs: list[Table], ctx: RunContext) -> Table:
        (table,) = inputs
        return table.mask(truthy(evaluate(self.params.where, table)))


def truthy(values: np.ndarray) -> np.ndarray:
    if values.dtype == bool:
        return values
    return np.fromiter((bool(v) and not (isinstance(v, float) and np.isnan(v)) for v in values),
                       dtype=bool, count=len(values))
