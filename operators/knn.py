"""``knn``: each sample's distance to its k-th nearest neighbour in an embedding space.

A cheap diversity indicator (Instruction-Mining's ``KNN-i``): samples far from the
rest of the pool have a large value. Exact, over the whole input table.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from dslrun.core.columns import FLOAT, Columns
from dslrun.core.context import RunContext
from dslrun.core.params import Params
from dslrun.core.values import Ref
from dslrun.operators.base import TableOperator
from dslrun.operators.registry import register
from dslrun.operators.selection.knn import knn_distance
from dslrun.runtime.data.table import Table


class KnnParams(Params):
    k: int = Field(6, ge=1, description="which neighbour (Instruction-Mining uses the 6th)")
    embedding: str = Field("embedding", description="column holding one vector per sample")
    metric: Literal["euclidean", "cosine"] = Field("euclidean", description="distance between vectors")
    stat: Literal["kth", "mean"] = Field("kth", description="distance to the k-th neighbour, or mean over the k nearest")
    column: str | None = Field(None, description="output column (default knn_<k>)")

    @field_validator("column")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError(f"{v!r} is not a column name")
        return v


@register
class Knn(TableOperator[KnnParams]):
    """Distance of every sample to its k-th nearest other sample (NaN when the pool has k or fewer rows)."""

    name = "knn"
    computes_labels = True  # an indicator per sample, though it needs the whole pool

    @property
    def out(self) -> str:
        return self.params.column or f"knn_{self.params.k}"

    def reads(self):
        return {"embedding": Ref(name=self.params.embedding)}

    def output_columns(self, inputs: list[Columns]) -> Columns:
        return {**inputs[0], self.out: FLOAT}

    def run(self, inputs: list[Table], ctx: RunContext) -> Table:
        from dslrun.operators.diverse_sample import vectors

        (table,) = inputs
        p = self.params
        dist = knn_distance(vectors(table.column(p.embedding)), p.k, metric=p.metric, stat=p.stat)
        return table.with_columns({self.out: dist})
