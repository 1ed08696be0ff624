"""``rank``: order by an expression and keep the top k, a top fraction, or rows where a predicate holds."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from dslrun.core.context import RunContext
from dslrun.core.expr import evaluate
from dslrun.core.params import Expr, Params
from dslrun.operators.base import TableOperator
from dslrun.operators.filter import truthy
from dslrun.operators.registry import register
from dslrun.runtime.data.table import Table


class RankParams(Params):
    by: Expr = Field(description="the score expression, e.g. `quality * complexity`")
    descending: bool = Field(True, description="highest score first")
    top: int | None = Field(None, ge=0, description="keep the first k rows")
    fraction: float | None = Field(None, gt=0, le=1, description="keep the first ⌊fraction × rows⌋ rows")
    where: Expr | None = Field(None, description="keep only rows where this holds, before top/fraction")
    order: Literal["score", "original"] = Field("score", description="output order of the kept rows")

    @model_validator(mode="after")
    def _one_cut(self):
        if self.top is not None and self.fraction is not None:
            raise ValueError("give `top` or `fraction`, not both")
        return self


@register
class Rank(TableOperator[RankParams]):
    """Sort by `by` (stable: ties keep pool order; missing scores last) and cut."""

    name = "rank"

    def reads(self):
        return {"by": self.params.by, "where": self.params.where}

    def run(self, inputs: list[Table], ctx: RunContext) -> Table:
        (table,) = inputs
        p = self.params
        if p.where is not None:
            table = table.mask(truthy(evaluate(p.where, table)))
        order = sort_order(evaluate(p.by, table), p.descending)
        k = len(order)
        if p.top is not None:
            k = min(p.top, k)
        elif p.fraction is not None:
            k = math.floor(p.fraction * len(order) + 1e-9)
            if k == 0 and len(order):
                ctx.stats.warnings.append(rounds_to_zero("fraction", p.fraction, len(order)))
        keep = order[:k]
        if p.order == "original":
            keep = np.sort(keep)
        return table.take(keep)


def rounds_to_zero(name: str, fraction: float, n: int) -> str:
    return (f"`{name}: {fraction:g}` of {n} rows is {fraction * n:.2g}, which rounds down to 0 rows: "
            f"raise `{name}`, use `top:`/`n:`, or give it more rows")


def sort_order(scores: np.ndarray, descending: bool) -> np.ndarray:
    """Stable order; missing values (None/NaN) go last whichever the direction."""
    n = len(scores)
    if scores.dtype == object:
        missing = np.fromiter((s is None or (isinstance(s, float) and math.isnan(s)) for s in scores), bool, n)
        present = np.flatnonzero(~missing)
        vals = scores[present]
        try:
            # sorted(reverse=True) is still stable: ties keep pool order.
            sub = sorted(range(len(vals)), key=lambda i: vals[i], reverse=descending)
        except TypeError as e:
            raise ValueError(f"cannot order mixed values: {e}") from None
        return np.concatenate([present[np.asarray(sub, dtype=np.int64)], np.flatnonzero(missing)])
    x = scores.astype(np.float64)
    missing = np.isnan(x)
    key = np.where(missing, 0.0, -x if descending else x)
    order = np.lexsort((np.arange(n), key, missing))
    return order
