"""``sample``: a seeded random subset — the baseline every selector must beat."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from dslrun.core.context import RunContext
from dslrun.core.params import Params
from dslrun.operators.base import TableOperator
from dslrun.operators.registry import register
from dslrun.runtime.data.table import Table


class SampleParams(Params):
    n: int | None = Field(None, ge=0, description="number of samples (capped at the pool size)")
    fraction: float | None = Field(None, gt=0, le=1, description="fraction of the pool, ⌊fraction × rows⌋")
    seed: int = Field(0, description="random seed: the same seed picks the same samples")
    order: Literal["original", "random"] = Field("original", description="output order")

    @model_validator(mode="after")
    def _one_size(self):
        if (self.n is None) == (self.fraction is None):
            raise ValueError("give exactly one of `n` or `fraction`")
        return self


@register
class Sample(TableOperator[SampleParams]):
    """Pick n rows uniformly at random without replacement (numpy PCG64, seeded)."""

    name = "sample"

    def run(self, inputs: list[Table], ctx: RunContext) -> Table:
        (table,) = inputs
        p = self.params
        k = p.n if p.n is not None else math.floor(p.fraction * len(table) + 1e-9)
        if k == 0 and len(table) and p.fraction is not None:
            from dslrun.operators.rank import rounds_to_zero

            ctx.stats.warnings.append(rounds_to_zero("fraction", p.fraction, len(table)))
        k = min(k, len(table))
        picked = np.random.default_rng(p.seed).choice(len(table), size=k, replace=False)
        return table.take(np.sort(picked) if p.order == "original" else picked)
