"""``quota``: keep the best rows of every group, within per-group quotas.

Mixing selectors often needs a fixed composition: so many samples per task category,
or a budget split across categories in proportion to their size. Within a group rows
are taken by ``by`` (highest first; ties keep pool order; missing scores last), or in
pool order when ``by`` is not given.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from dslrun.core.context import RunContext
from dslrun.core.expr import evaluate
from dslrun.core.params import Expr, Params
from dslrun.operators.base import TableOperator
from dslrun.operators.rank import sort_order
from dslrun.operators.registry import register
from dslrun.runtime.data.table import Table


class QuotaParams(Params):
    group: Expr = Field(description="the group of each row, e.g. `category`")
    by: Expr | None = Field(None, description="the score to take rows by within a group (default: pool order)")
    descending: bool = Field(True, description="highest score first")
    per_group: int | None = Field(None, ge=0, description="at most this many rows from every group")
    counts: dict[str, int] | None = Field(None, description="rows per named group, e.g. {open_qa: 100, brainstorming: 50}; "
                                                         "groups not named get `others`")
    others: int = Field(0, ge=0, description="counts: rows for each group not named")
    k: int | None = Field(None, ge=0, description="a total, split over the groups by `split`")
    split: Literal["proportional", "equal"] = Field(
        "proportional", description="k: proportional to group sizes (largest remainder), or equal shares "
                                    "(a group smaller than its share gives the rest to the others)")
    order: Literal["score", "original"] = Field("original", description="output order of the kept rows")

    @model_validator(mode="after")
    def _one_rule(self):
        given = [n for n in ("per_group", "counts", "k") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of `per_group`, `counts` or `k` (with `split`)")
        if self.counts is not None and any(v < 0 for v in self.counts.values()):
            raise ValueError("counts must be >= 0")
        return self


def proportional_quotas(sizes: list[int], k: int) -> list[int]:
    """Hamilton's largest-remainder split of ``k`` by group size; ties go to the earlier group."""
    total = sum(sizes)
    if total == 0:
        return [0] * len(sizes)
    k = min(k, total)
    exact = [k * s / total for s in sizes]
    quotas = [int(e) for e in exact]
    by_remainder = sorted(range(len(sizes)), key=lambda g: (-(exact[g] - quotas[g]), g))
    for g in by_remainder[: k - sum(quotas)]:
        quotas[g] += 1
    return quotas


def equal_quotas(sizes: list[int], k: int) -> list[int]:
    """Water-filling: the same share for every group, capped by its size; a small group's unused share
    goes to the others; the last few rows that do not divide evenly go to the earlier groups."""
    k = min(k, sum(sizes))
    quotas = list(sizes)
    left, rest = k, sorted(range(len(sizes)), key=lambda g: (sizes[g], g))
    while rest:
        share = left // len(rest)
        if sizes[rest[0]] > share:
            break
        left -= sizes[rest.pop(0)]  # small enough to take whole
    if rest:
        share, extra = divmod(left, len(rest))
        for i, g in enumerate(sorted(rest)):
            quotas[g] = share + (i < extra)
    return quotas


@register
class Quota(TableOperator[QuotaParams]):
    """Keep the top rows of each group: per_group, counts per group, or a total split over the groups."""

    name = "quota"

    def reads(self):
        return {"group": self.params.group, "by": self.params.by}

    def run(self, inputs: list[Table], ctx: RunContext) -> Table:
        (table,) = inputs
        p = self.params
        n = len(table)
        groups = np.asarray(evaluate(p.group, table), dtype=object).reshape(-1)
        groups = np.broadcast_to(groups, (n,)) if groups.size == 1 else groups
        order = np.arange(n) if p.by is None else sort_order(evaluate(p.by, table), p.descending)
        names: list = []
        members: dict = {}
        for i in range(n):  # groups in order of first appearance in the pool
            key = _key(groups[i])
            if key not in members:
                names.append(key)
                members[key] = []
        for row in order.tolist():
            members[_key(groups[row])].append(row)
        sizes = [len(members[g]) for g in names]
        if p.per_group is not None:
            quotas = [min(p.per_group, s) for s in sizes]
        elif p.counts is not None:
            quotas = [min(p.counts.get(str(g), p.others), s) for g, s in zip(names, sizes)]
        else:
            assert p.k is not None
            quotas = (proportional_quotas if p.split == "proportional" else equal_quotas)(sizes, p.k)
        chosen = {i for g, q in zip(names, quotas) for i in members[g][:q]}
        keep = [int(i) for i in order if int(i) in chosen] if p.order == "score" else sorted(chosen)
        summary = ", ".join(f"{g}: {q}/{s}" for g, q, s in zip(names, quotas, sizes))
        ctx.stats.notes.append(f"kept/available per group: {summary}")
        return table.take(np.asarray(keep, dtype=np.int64))


def _key(value):
    return "null" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
