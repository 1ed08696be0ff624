"""A column computed row by row from other columns when a step asks for it.

An Alpaca pool's ``messages`` (the chat a model or judge sees) follow from its instruction,
input and output; a pool of millions read through Arrow does not build two dicts per row
that only model steps read. ``values`` gives what ``parse_record`` would have stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dslrun.runtime.data.lazy_column import LazyColumn


class DerivedColumn(LazyColumn):
    """``make(*values)`` for each row, from the same rows of ``sources``."""

    def __init__(self, make: Callable[..., Any], sources: Sequence[LazyColumn]):
        self.make, self.sources = make, list(sources)

    def __len__(self) -> int:
        return len(self.sources[0])

    @property
    def on_disk(self) -> bool:
        return any(s.on_disk for s in self.sources)

    def take(self, idx: np.ndarray) -> DerivedColumn:
        return DerivedColumn(self.make, [s.take(idx) for s in self.sources])

    def read(self, positions: np.ndarray) -> list[Any]:
        columns = [s.read(positions) for s in self.sources]
        return [self.make(*row) for row in zip(*columns)]

    def concat(self, others: Sequence[LazyColumn]) -> DerivedColumn | None:
        if any(not isinstance(o, DerivedColumn) or o.make is not self.make for o in others):
            return None
        joined = []
        for i, s in enumerate(self.sources):
            j = s.concat([o.sources[i] for o in others])  # type: ignore[attr-defined]
            if j is None:
                return None
            joined.append(j)
        return DerivedColumn(self.make, joined)


def alpaca_messages(instruction: str, input_: str, output: str) -> list[dict[str, str]]:
    """The chat of an Alpaca record, as ``parse_record`` builds it (runtime/data/pool_files.py)."""
    user = instruction + ("\n\n" + input_ if input_.strip() else "")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
