"""Pools held in this process (the Python API's ``pool=``), read by ``load`` like a file.

``dslrun.run(spec, pool=df)`` registers the object here under a ``memory://`` name and sets
the spec's ``pool`` parameter to that name, so the run is the CLI's run, step for step: the
same ``load`` validates the records, gives them the same content ids (cached scores are
shared with file pools) and quarantines the same rows. Nothing is written to disk.

Records keep the object's own shape: a list of dicts is read as is (and ``save`` writes it
back as JSONL, like the JSONL file it would be); Arrow tables, pandas DataFrames and
``datasets.Dataset``s are read a batch of rows at a time with ``to_pylist``, exactly as a
Parquet pool is (and saved as Parquet).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

PREFIX = "memory://"
BATCH_ROWS = 8192

_POOLS: dict[str, MemoryPool] = {}
_LOCK = threading.Lock()
_COUNTER = itertools.count(1)


@dataclass(frozen=True)
class MemoryPool:
    data: Any  # a list of records, or a pyarrow.Table, or a datasets.Dataset
    fmt: str  # the format `save` writes by default: "jsonl" for records, "parquet" for tables
    kind: str  # what the user passed, for messages

    def records(self) -> Iterator[tuple[int, Any, str | None]]:
        """(row, record, problem) like the file readers; a memory pool has no unreadable rows."""
        if isinstance(self.data, list):
            yield from ((i, rec, None) for i, rec in enumerate(self.data))
            return
        batches = (self.data.iter(batch_size=BATCH_ROWS) if self.kind == "datasets.Dataset"
                   else self.data.to_batches(max_chunksize=BATCH_ROWS))
        i = 0
        for batch in batches:
            for rec in batch.to_pylist():
                yield i, rec, None
                i += 1


    def take(self, rows: Any) -> Any:
        """The records at these positions as a ``pyarrow.Table`` with the pool's own Arrow schema,
        or None for a list of records (which has none)."""
        if isinstance(self.data, list):
            return None
        if self.kind == "datasets.Dataset":
            return self.data.select(list(rows))[:]
        return self.data.take(rows)


def is_memory(path: Any) -> bool:
    return isinstance(path, str) and path.startswith(PREFIX)


def as_memory_pool(obj: Any) -> MemoryPool:
    """A list of dicts, a pyarrow.Table, a pandas.DataFrame or a datasets.Dataset, as a pool;
    anything else is a TypeError that names what is accepted."""
    if isinstance(obj, (list, tuple)):
        return MemoryPool(list(obj), "jsonl", "list")
    module = type(obj).__module__.split(".")[0]
    name = type(obj).__name__
    if module == "pyarrow" and name == "Table":
        return MemoryPool(obj, "parquet", "pyarrow.Table")
    if module == "pandas" and name == "DataFrame":
        import pyarrow as pa

        return MemoryPool(pa.Table.from_pandas(obj, preserve_index=False), "parquet", "pandas.DataFrame")
    if module == "datasets" and name == "Dataset":
        return MemoryPool(obj.with_format("arrow"), "parquet", "datasets.Dataset")
    if module == "datasets" and name in ("DatasetDict", "IterableDatasetDict"):
        raise TypeError(f"pool is a {name} with splits {sorted(obj)}; pass one split, e.g. pool=ds[\"train\"]")
    raise TypeError(f"pool must be a path, a list of dicts, a pandas.DataFrame, a pyarrow.Table or a "
                    f"datasets.Dataset, not {module}.{name}")


def register(pool: MemoryPool) -> str:
    """A ``memory://`` name for ``pool``, valid until ``unregister``."""
    with _LOCK:
        name = f"{PREFIX}{pool.kind}/{next(_COUNTER)}"
        _POOLS[name] = pool
    return name


def unregister(name: str) -> None:
    with _LOCK:
        _POOLS.pop(name, None)


def lookup(name: str) -> MemoryPool:
    with _LOCK:
        pool = _POOLS.get(name)
    if pool is None:
        from dslrun.runtime.data.pool_files import PoolError

        raise PoolError(f"{name}: no such in-memory pool (it lives only as long as the plan made with it)")
    return pool
