"""Where a pool's records come from: a file, or a pool held in memory (the Python API).

``open_pool`` turns what ``load(path: ...)`` names into a ``Source``: its records as
``(row, record, problem)``, the format ``save`` writes by default, and a label for
messages. ``read_pool`` (pool_files.py) validates the records the same way whatever the
source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dslrun.runtime.data import memory_pools


@dataclass(frozen=True)
class Source:
    label: str
    fmt: str
    records: Callable[[], Iterator[tuple[int, Any, str | None]]]


def open_pool(path: str | Path) -> Source:
    from dslrun.runtime.data.pool_files import PoolError, _read_records, file_format

    if memory_pools.is_memory(path):
        pool = memory_pools.lookup(str(path))
        return Source(str(path), pool.fmt, pool.records)
    p = Path(path)
    if not p.exists():
        raise PoolError(f"{p}: pool file not found")
    fmt = file_format(p)
    return Source(str(p), fmt, lambda: _read_records(p, fmt))
