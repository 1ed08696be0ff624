"""A pool's text held as Arrow arrays, in memory or spilled to Arrow IPC files.

``load`` reads clean JSONL and JSON arrays with Arrow's reader (arrow_jsonl.py,
arrow_json_array.py) and keeps the text columns as the Arrow arrays it got: no Python string
per value. A pool larger than ``spill_rows`` writes
each batch of each column to an IPC file in the temp dir as it is read, so its text is never
all in memory. Reading some rows back opens only the batches that hold them; the files are
read, not memory-mapped, because pages a mapping touches count in the process's resident
memory and stay there (a ranked subset touches most of them), and the point is a driver
whose peak memory does not grow with the pool's text.
"""

from __future__ import annotations

import shutil
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dslrun.runtime.data.disk_columns import spill_dir
from dslrun.runtime.data.lazy_column import BLOCK_ROWS, StoredColumn


class ArrowStore:
    """Columns as sequences of Arrow arrays (the batches they were appended in).

    ``spill``: each column's batches go to an IPC file in a fresh folder under ``root`` (the
    temp dir when None), removed with the store; else they stay in memory. A column may hold
    encoded values (``decode``: pickled Python objects, say), decoded when read."""

    def __init__(self, spill: bool = False, root: str | Path | None = None):
        self.spill, self.root = False, root
        self.dir: Path | None = None
        self.decoders: dict[str, Callable[[Any], Any]] = {}
        self._starts: dict[str, list[int]] = {}  # per column: first row of each batch, then its rows
        self._memory: dict[str, list[Any]] = {}
        self._writers: dict[str, Any] = {}
        self._files: dict[str, Path] = {}
        if spill:
            self.spill_now()

    def rows(self, name: str) -> int:
        return self._starts[name][-1]

    def extend(self, name: str, arr: Any, decode: Callable[[Any], Any] | None = None) -> None:
        """Append one batch of values to a column (created by its first batch)."""
        import pyarrow as pa

        arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
        if decode is not None:
            self.decoders[name] = decode
        starts = self._starts.setdefault(name, [0])
        starts.append(starts[-1] + len(arr))
        self._put(name, arr)

    def append(self, columns: dict[str, Any]) -> None:
        """One batch of each of these columns."""
        for name, arr in columns.items():
            self.extend(name, arr)

    def _put(self, name: str, arr: Any) -> None:
        import pyarrow as pa

        if not self.spill:
            self._memory.setdefault(name, []).append(arr)
            return
        if name not in self._writers:
            assert self.dir is not None
            path = self.dir / f"{len(self._files)}.arrow"  # user field names never name files
            self._files[name] = path
            self._writers[name] = pa.ipc.new_file(str(path), pa.schema([("v", arr.type)]))
        self._writers[name].write_batch(pa.record_batch([arr], names=["v"]))

    def spill_now(self, root: str | Path | None = None) -> None:
        """Move the batches held in memory to files, and spill every batch from now on."""
        self.spill, self.dir = True, spill_dir((root if root is not None else self.root) or None)
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.dir), True)
        memory, self._memory = self._memory, {}
        for name, arrays in memory.items():
            for arr in arrays:
                self._put(name, arr)

    def finish(self) -> None:
        """Done appending: the files are complete and can be read."""
        for w in self._writers.values():
            w.close()
        self._writers = {}

    def column(self, name: str) -> ArrowColumn:
        return ArrowColumn(self, name, None, self.rows(name))

    def batches(self, name: str) -> int:
        return len(self._starts[name]) - 1

    def batch(self, name: str, b: int) -> Any:
        if not self.spill:
            return self._memory[name][b]
        import pyarrow as pa

        with pa.OSFile(str(self._files[name])) as f:  # read, not mapped (see the module's docstring)
            return pa.ipc.open_file(f).get_batch(b).column(0)

    def read(self, name: str, positions: np.ndarray) -> Any:
        """The values at ``positions`` as one Arrow array, in that order; each batch is read once."""
        import pyarrow as pa

        starts = np.asarray(self._starts[name], dtype=np.int64)
        order = np.argsort(positions, kind="stable")
        sorted_pos = positions[order]
        which = np.searchsorted(starts, sorted_pos, side="right") - 1
        parts = []
        for b in np.unique(which).tolist():
            lo, hi = np.searchsorted(which, [b, b + 1])
            parts.append(self.batch(name, b).take(pa.array(sorted_pos[lo:hi] - starts[b])))
        if not parts:
            return pa.array([], type=pa.string())
        joined = pa.concat_arrays(parts)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return joined.take(pa.array(inverse))


class ArrowColumn(StoredColumn):
    """Some rows of an ``ArrowStore`` column, in a table's order."""

    @property
    def on_disk(self) -> bool:
        return self.store.spill

    def read(self, positions: np.ndarray) -> list[Any]:
        values = self.read_arrow(positions).to_pylist()
        decode = self.store.decoders.get(self.name)
        return values if decode is None else [None if v is None else decode(v) for v in values]

    def read_arrow(self, positions: np.ndarray) -> Any:
        return self.store.read(self.name, self.positions()[np.asarray(positions, dtype=np.int64)])

    def arrow_blocks(self, rows: int = BLOCK_ROWS) -> Iterator[Any] | None:
        return None if self.name in self.store.decoders else self._arrow_blocks(rows)

    def _arrow_blocks(self, rows: int) -> Iterator[Any]:
        if self.index is None:  # the whole column in order: its batches, re-cut to ``rows``
            yield from _rechunk((self.store.batch(self.name, b) for b in range(self.store.batches(self.name))), rows)
            return
        for i in range(0, self._n, rows):
            yield self.read_arrow(np.arange(i, min(i + rows, self._n), dtype=np.int64))

    def blocks(self, rows: int = BLOCK_ROWS) -> Iterator[list[Any]]:
        decode = self.store.decoders.get(self.name)
        for block in self._arrow_blocks(rows):
            values = block.to_pylist()
            yield values if decode is None else [None if v is None else decode(v) for v in values]


def _rechunk(arrays: Iterator[Any], rows: int) -> Iterator[Any]:
    """The arrays' values as arrays of ``rows`` values (the last may be shorter)."""
    import pyarrow as pa

    pending: list[Any] = []
    have = 0
    for arr in arrays:
        while len(arr):
            take = min(rows - have, len(arr))
            pending.append(arr.slice(0, take))
            have, arr = have + take, arr.slice(take)
            if have == rows:
                yield pending[0] if len(pending) == 1 else pa.concat_arrays(pending)
                pending, have = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else pa.concat_arrays(pending)
