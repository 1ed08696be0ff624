"""The table interface every step sees: columns keyed by row, a stable sample id per row.

``runtime/data/table.py`` implements it (numpy columns, a large pool's text on disk);
the expression evaluator and ``RunContext`` are typed against this interface.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np


class TableLike(Protocol):
    def __len__(self) -> int: ...

    def __contains__(self, name: str) -> bool: ...

    @property
    def column_names(self) -> list[str]: ...

    @property
    def ids(self) -> np.ndarray: ...

    def column(self, name: str) -> np.ndarray: ...

    def take(self, indices: Iterable[int] | np.ndarray) -> TableLike: ...

    def with_columns(self, new: Mapping[str, np.ndarray]) -> TableLike: ...

    def rows(self, columns: Sequence[str] | None = None) -> list[dict[str, Any]]: ...
