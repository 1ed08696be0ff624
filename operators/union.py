"""``union``: the rows of several steps, each sample once.

Recipes that select in stages end with a union: MoDS keeps its seed instructions plus
the ones the seed-tuned model still gets wrong. Rows come in input order (the first
input's rows, then the new rows of the second, …); a sample present in several inputs
is kept once, from the first. The output has the columns every input has.
"""

from __future__ import annotations

import numpy as np

from dslrun.core.columns import Columns
from dslrun.core.context import RunContext
from dslrun.core.params import Params
from dslrun.operators.base import TableOperator
from dslrun.operators.registry import register
from dslrun.runtime.data.table import Table, concat


class UnionParams(Params):
    pass


@register
class Union(TableOperator[UnionParams]):
    """All rows of the input steps, each sample once (first occurrence wins), in input order."""

    name = "union"
    n_inputs = None

    def output_columns(self, inputs: list[Columns]) -> Columns:
        common = dict(inputs[0])
        for cols in inputs[1:]:
            common = {c: t if cols.get(c) == t else "any" for c, t in common.items() if c in cols}
        return common

    def run(self, inputs: list[Table], ctx: RunContext) -> Table:
        names = [c for c in inputs[0].all_columns if all(c in t for t in inputs[1:])]
        parts = [t.select(names) for t in inputs]
        table = concat(parts)
        _, first = np.unique(table.ids, return_index=True)
        return table.take(np.sort(first))
