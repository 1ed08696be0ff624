"""``dedup``: drop repeated samples, keeping the first occurrence."""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

import numpy as np
from pydantic import Field

from dslrun.core.context import RunContext
from dslrun.core.params import Params
from dslrun.operators.base import TableOperator
from dslrun.operators.registry import register
from dslrun.runtime.data.table import Table

_SPACE = re.compile(r"\s+")


class DedupParams(Params):
    method: Literal["exact", "normalized"] = Field(
        "normalized", description="exact: identical text; normalized: case, Unicode form and whitespace ignored")
    on: Literal["sample", "instruction", "output"] = Field(
        "sample", description="what must repeat: the whole sample, its instruction (+input), or its response")


def normalized(text: str) -> str:
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


@register
class Dedup(TableOperator[DedupParams]):
    """Keep the first of each group of duplicates; order is kept."""

    name = "dedup"

    def run(self, inputs: list[Table], ctx: RunContext) -> Table:
        (table,) = inputs
        keys = self._keys(table)
        seen: set = set()
        keep = np.zeros(len(table), dtype=bool)
        for i, k in enumerate(keys):
            if k not in seen:
                seen.add(k)
                keep[i] = True
        return table.mask(keep)

    def _keys(self, table: Table):
        fn = normalized if self.params.method == "normalized" else (lambda s: s)
        if self.params.on == "output":
            return [fn(o) for o in table.column("output")]
        if self.params.on == "instruction":
            return [(fn(i), fn(x)) for i, x in zip(table.column("instruction"), table.column("input"))]
        return [tuple((m["role"], fn(m["content"])) for m in msgs) for msgs in table.column("messages")]
