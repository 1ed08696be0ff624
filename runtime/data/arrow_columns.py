"""A pool's text held as Arrow arrays, in memory or spilled to Arrow IPC files.

``load`` reads clean JSONL with Arrow's reader (arrow_jsonl.py) and keeps the text columns as
the Arrow arrays it got: no Python string per value. A pool larger than ``spill_rows`` writes
each batch of each column to an IPC file in the temp dir as it is read, so its text is never
all in memory. Reading some rows back opens only the batches that hold them; the files are
read, not memory-mapped, because pages a mapping touches count in the process's resident
memory and stay there (a ranked subset touches most of them), and the point is a driver
whose peak memory does not grow with the pool's text.
"""

from __future__ import annotations

import shutil
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dslrun.runtime.data.disk_columns import spill_dir
from dslrun.runtime.data.lazy_column import BLOCK_ROWS, StoredColumn


class ArrowStore:
    """Columns as sequences of Arrow arrays (one per batch the reader gave), all of the same rows.

    With ``root`` (a folder, or "" for the temp dir) each column's batches go to an IPC file
    there; without it they stay in memory."""

    def __init__(self, spill: bool, root: str | Path | None = None):
        self.spill = spill
        self.dir: Path | None = None
        if spill:
            self.dir = spill_dir(root or None)
            self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.dir), True)
        self.starts: list[int] = [0]  # first row of each batch, then the row count
        self._memory: dict[str, list[Any]] = {}
        self._writers: dict[str, Any] = {}
        self._files: dict[str, Path] = {}

    @property
    def rows(self) -> int:
        return self.starts[-1]

    def append(self, columns: dict[str, Any]) -> None:
        """One batch: equal-length Arrow arrays by column name (every column each time)."""
        import pyarrow as pa

        n = {len(a) for a in columns.values()}
        assert len(n) == 1, "a batch's columns have one length"
        for name, arr in columns.items():
            self._put(name, arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr)
        self.starts.append(self.starts[-1] + n.pop())

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

    def add_missing(self, name: str) -> None:
        """A column first seen after some batches: null text in the rows before."""
        import pyarrow as pa

        done = self.starts
        self.starts = [0]
        for lo, hi in zip(done, done[1:]):
            self._put(name, pa.nulls(hi - lo, pa.string()))
            self.starts.append(hi)

    def spill_now(self, root: str | Path | None) -> None:
        """Move the batches held in memory to files, and spill every batch from now on."""
        self.spill, self.dir = True, spill_dir(root or None)
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.dir), True)
        memory, self._memory = self._memory, {}
        for name, arrays in memory.items():
            for arr in arrays:
                self._put(name, arr)

    def finish(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers = {}

    def column(self, name: str) -> ArrowColumn:
        return ArrowColumn(self, name, None, self.rows)

    def batch(self, name: str, b: int) -> Any:
        if not self.spill:
            return self._memory[name][b]
        import pyarrow as pa

        with pa.OSFile(str(self._files[name])) as f:  # read, not mapped (see the module's docstring)
            return pa.ipc.open_file(f).get_batch(b).column(0)

    def read(self, name: str, positions: np.ndarray) -> Any:
        """The values at ``positions`` as one Arrow array, in that order; each batch is read once."""
        import pyarrow as pa

        starts = np.asarray(self.starts, dtype=np.int64)
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

    def read(self, positions: np.ndarray) -> list[Any]:
        return self.read_arrow(positions).to_pylist()

    def read_arrow(self, positions: np.ndarray) -> Any:
        return self.store.read(self.name, self.positions()[np.asarray(positions, dtype=np.int64)])

    def arrow_blocks(self, rows: int = BLOCK_ROWS) -> Iterator[Any]:
        if self.index is None:  # the whole column in order: its batches as they are
            for b in range(len(self.store.starts) - 1):
                yield self.store.batch(self.name, b)
            return
        for i in range(0, self._n, rows):
            yield self.read_arrow(np.arange(i, min(i + rows, self._n), dtype=np.int64))

    def blocks(self, rows: int = BLOCK_ROWS) -> Iterator[list[Any]]:
        for block in self.arrow_blocks(rows):
            yield block.to_pylist()
