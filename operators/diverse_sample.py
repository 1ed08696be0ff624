"""``diverse-sample``: diversity-aware selection (DEITA, k-center, InsTag coverage, facility location).

The algorithms live in ``operators/selection/`` as pure numpy kernels; this
module reads the columns a spec names and returns the chosen rows.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from dslrun.core.context import RunContext
from dslrun.core.expr import evaluate
from dslrun.core.params import Expr, Params, StepRef
from dslrun.core.values import Ref
from dslrun.operators.base import TableOperator
from dslrun.operators.registry import register
from dslrun.operators.selection import deita_filter, facility_location, kcenter_greedy, tag_coverage
from dslrun.runtime.data.table import Table

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
    given: StepRef | None = Field(None, description="kcenter: a step whose samples are already selected: they are "
                                                    "the initial centres and are never chosen again")
    order: Literal["selection", "original"] = Field("selection", description="output order")

    @model_validator(mode="after")
    def _needs(self):
        if self.method == "deita" and self.by is None:
            raise ValueError("method deita needs `by`, the score to sort by (e.g. `by: quality * complexity`)")
        return self


@register
class DiverseSample(TableOperator[DiverseSampleParams]):
    """Select k samples that are good and unlike each other."""

    name = "diverse-sample"

    def step_refs(self) -> list[str]:
        return [self.params.given] if self.params.given else []

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
                assert p.by is not None  # DiverseSampleParams requires `by` for deita
                scores = np.asarray(evaluate(p.by, table), dtype=np.float64)
                chosen = deita_filter(vecs, scores, p.k, p.threshold, batch_size=p.batch_size)
            elif p.method == "kcenter":
                chosen = self._kcenter(table, vecs, ctx)
            else:
                chosen, _gains = facility_location(vecs, min(p.k, len(table)), metric=p.metric)
        chosen = np.asarray(chosen, dtype=np.int64)
        return table.take(np.sort(chosen) if p.order == "original" else chosen)


    def _kcenter(self, table: Table, vecs: np.ndarray, ctx: RunContext) -> np.ndarray:
        p = self.params
        if not p.given:
            return kcenter_greedy(vecs, min(p.k, len(table)), metric=p.metric, seed=p.seed)
        given = ctx.refs[p.given]
        if p.embedding not in given:
            raise ValueError(f"given step `{p.given}` has no `{p.embedding}` column to place its centres")
        row_of = {sid: i for i, sid in enumerate(table.ids.tolist())}
        inside = [row_of[sid] for sid in given.ids.tolist() if sid in row_of]
        outside = [i for i, sid in enumerate(given.ids.tolist()) if sid not in row_of]
        if outside:  # centres that are not candidates still count: append them after the candidates
            vecs = np.concatenate([vecs, vectors(given.column(p.embedding))[outside]])
        initial = inside + list(range(len(table), len(table) + len(outside)))
        k = min(p.k, len(table) - len(set(inside)))
        return kcenter_greedy(vecs, k, metric=p.metric, seed=p.seed, initial=initial)


def vectors(column: np.ndarray) -> np.ndarray:
    """A (rows × dims) float32 matrix from a vector column (2-D array or lists)."""
    if column.ndim == 2:
        return column.astype(np.float32, copy=False)
    if len(column) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.asarray(v, dtype=np.float32) for v in column])
