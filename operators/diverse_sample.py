"""``diverse-sample``: diversity-aware selection (DEITA, k-center, InsTag coverage, facility location).

The algorithms live in ``operators/selection/`` as pure numpy kernels; this
module reads the columns a spec names and returns the chosen rows.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from dslrun.dsl.expr import evaluate
from dslrun.dsl.ir import Ref
from dslrun.operators.base import Expr, Params, TableOperator
from dslrun.operators.registry import register
from dslrun.operators.selection import deita_filter, facility_location, kcenter_greedy, tag_coverage
from dslrun.runtime.context import RunContext
from dslrun.runtime.table import Table

METHODS = ("deita", "kcenter", "tag-coverage", "facility-location")


class DiverseSampleParams(Params):
    method: Literal["deita", "kcenter", "tag-coverage", "facility-location"] = Field(
        description="deita: score-first with a similarity threshold; kcenter: farthest-point coreset; "
                    "tag-coverage: InsTag complexity-first; facility-location: Superfiltering.D")
    k: int = Field(ge=1, description="number of samples to select")
    by: Expr | None = Field(None, description="deita: the score expression, highest first")
    embedding: str = Field("embedding", description="column holding one vector per sample")
    tags: str = Field("tags", description="tag-coverage: column holding each sample's tag list")
    threshold: float = Field(0.9, ge=-1, le=1, description="deita: drop a candidate whose cosine similarity "
                                                           "to a kept sample is greater than this")
    batch_size: int = Field(1, ge=1, description="deita: DEITA's batch option (1 = the paper's default)")
    metric: Literal["euclidean", "cosine"] = Field("euclidean", description="kcenter/facility-location distance")
    seed: int = Field(0, description="kcenter: seed of the first centre")
    order: Literal["selection", "original"] = Field("selection", description="output order")

    @model_validator(mode="after")
    def _needs(self):
        if self.method == "deita" and self.by is None:
            raise ValueError("method deita needs `by`, the score to sort by (e.g. `by: quality * complexity`)")
        return self


@register
class DiverseSample(TableOperator):
    """Select k samples that are good and unlike each other."""

    name = "diverse-sample"
    Params = DiverseSampleParams

    def reads(self):
        p = self.params
        used = {"tags": Ref(name=p.tags)} if p.method == "tag-coverage" else {"embedding": Ref(name=p.embedding)}
        if p.by is not None:
            used["by"] = p.by
        return used

    def run(self, inputs: list[Table], ctx: RunContext) -> Table:
        (table,) = inputs
        p = self.params
        if p.method == "tag-coverage":
            chosen = np.asarray(tag_coverage([t or [] for t in table.column(p.tags)], p.k), dtype=np.int64)
        else:
            vecs = vectors(table.column(p.embedding))
            if p.method == "deita":
                scores = np.asarray(evaluate(p.by, table, table.ids), dtype=np.float64)
                chosen = deita_filter(vecs, scores, p.k, p.threshold, batch_size=p.batch_size)
            elif p.method == "kcenter":
                chosen = kcenter_greedy(vecs, min(p.k, len(table)), metric=p.metric, seed=p.seed)
            else:
                chosen, _gains = facility_location(vecs, min(p.k, len(table)), metric=p.metric)
        chosen = np.asarray(chosen, dtype=np.int64)
        return table.take(np.sort(chosen) if p.order == "original" else chosen)


def vectors(column: np.ndarray) -> np.ndarray:
    """A (rows × dims) float32 matrix from a vector column (2-D array or lists)."""
    if column.ndim == 2:
        return column.astype(np.float32, copy=False)
    if len(column) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.asarray(v, dtype=np.float32) for v in column])
