"""Columns kept on disk, so a large pool's text is never all in memory at once.

``load`` writes the heavy columns of a large pool (instruction, input, output, messages,
the original records, text extra fields) to a ``ColumnStore``: one file of encoded values
per column, plus the values' offsets in memory (8 bytes a row). A table holds a
``DiskColumn`` for each: a store column and which of its rows this table has. Taking,
masking and slicing a table compose those row indices and read nothing; only a step that
asks for a column's values (``Table.column``) reads them, and only for its own rows.

Values are read with ``pread``, one read per run of nearby values, not through ``mmap``:
the pages a mapping touches count in the process's resident memory (with read-ahead, most
of a file for scattered reads such as a ranked subset's records), and the point is a
driver whose peak memory does not grow with the pool's text.
"""

from __future__ import annotations

import glob
import os
import pickle
import shutil
import socket
import tempfile
import weakref
from array import array
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

BLOCK_ROWS = 65_536  # rows read at a time when a caller walks a column
GAP = 64 * 1024  # bytes between two wanted values still read through rather than skipped
SPAN = 8 * 2**20  # the most bytes one read brings in


def _encode_str(v: Any) -> bytes:
    return v.encode("utf-8", "surrogatepass")


def _decode_str(b: bytes) -> str:
    return b.decode("utf-8", "surrogatepass")


def _encode_obj(v: Any) -> bytes:
    return pickle.dumps(v, protocol=5)


# codec name -> (encode, decode)
CODECS: dict[str, tuple[Callable[[Any], bytes], Callable[[bytes], Any]]] = {"str": (_encode_str, _decode_str), "obj": (_encode_obj, pickle.loads)}


class ColumnStore:
    """A directory of column files for one table's worth of data; removed with its last user.

    ``DiskColumn``s keep their store alive, so the files last exactly as long as some table
    can still read them (and at the latest until the interpreter exits).
    """

    def __init__(self, root: str | Path | None = None):
        if root is not None:
            Path(root).mkdir(parents=True, exist_ok=True)
        prefix = f"dslrun-columns-{socket.gethostname()}-{os.getpid()}-"
        self.dir = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
        remove_orphans(self.dir.parent)
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.dir), True)
        self.offsets: dict[str, np.ndarray] = {}
        self.codecs: dict[str, str] = {}

    def writer(self, name: str, codec: str) -> ColumnWriter:
        if name in self.codecs:
            raise ValueError(f"column {name!r} is already in this store")
        self.codecs[name] = codec
        return ColumnWriter(self, name, codec)

    def path(self, name: str) -> Path:
        # Column names are user field names; the file is named by position, not by name.
        return self.dir / f"{list(self.codecs).index(name)}.bin"

    def read(self, name: str, positions: np.ndarray) -> list[Any]:
        """The values at ``positions`` (rows of the stored column), in that order."""
        off = self.offsets[name]
        positions = np.asarray(positions, dtype=np.int64)
        decode = CODECS[self.codecs[name]][1]
        order = np.argsort(positions, kind="stable")
        starts, ends = off[positions[order]].tolist(), off[positions[order] + 1].tolist()
        values: list[Any] = [None] * len(positions)
        fd = os.open(self.path(name), os.O_RDONLY)
        try:
            i = 0
            while i < len(starts):  # one read per run of nearby values, in file order
                j = i + 1
                while j < len(starts) and starts[j] - ends[j - 1] <= GAP and ends[j] - starts[i] <= SPAN:
                    j += 1
                base = starts[i]
                chunk = os.pread(fd, max(ends[i:j]) - base, base)
                for k in range(i, j):
                    values[order[k]] = decode(chunk[starts[k] - base:ends[k] - base])
                i = j
        finally:
            os.close(fd)
        return values


def remove_orphans(root: Path) -> None:
    """Remove stores left by killed runs on this host (their process is gone): a SIGKILLed
    run cannot clean up after itself, and a large pool's text is gigabytes. Stores of other
    hosts (a shared tmp_dir) are left alone; their pids mean nothing here."""
    host = socket.gethostname()
    for d in root.glob(f"dslrun-columns-{glob.escape(host)}-*-*"):
        pid = d.name[len(f"dslrun-columns-{host}-"):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class ColumnWriter:
    """Appends encoded values to one column file; ``finish`` returns the whole column."""

    def __init__(self, store: ColumnStore, name: str, codec: str):
        self.store, self.name = store, name
        self.encode = CODECS[codec][0]
        self.file = open(store.path(name), "wb")  # noqa: SIM115 - open across extend() calls, closed by finish()
        self.ends = array("q", [0])

    def extend(self, values: Iterable[Any]) -> None:
        parts = [self.encode(v) for v in values]
        end = self.ends[-1]
        for p in parts:
            end += len(p)
            self.ends.append(end)
        self.file.write(b"".join(parts))

    def finish(self) -> DiskColumn:
        self.file.close()
        self.store.offsets[self.name] = np.frombuffer(self.ends, dtype=np.int64).copy()
        del self.ends
        return DiskColumn(self.store, self.name, None)


class DiskColumn:
    """Some rows of a stored column, in a table's order; quacks enough like a 1-D object array
    for length and shape checks, and becomes one with ``values()``."""

    dtype = np.dtype(object)
    ndim = 1

    def __init__(self, store: ColumnStore, name: str, index: np.ndarray | None):
        self.store, self.name = store, name
        self.index = index  # rows of the stored column; None: all of them, in order
        self._n = len(store.offsets[name]) - 1 if index is None else len(index)

    def __len__(self) -> int:
        return self._n

    def positions(self) -> np.ndarray:
        return np.arange(self._n, dtype=np.int64) if self.index is None else self.index

    def take(self, idx: np.ndarray) -> DiskColumn:
        idx = np.asarray(idx, dtype=np.int64)
        return DiskColumn(self.store, self.name, idx if self.index is None else self.index[idx])

    def slice(self, start: int, stop: int) -> DiskColumn:
        return self.take(np.arange(*slice(start, stop).indices(self._n), dtype=np.int64))

    def values(self) -> np.ndarray:
        out = np.empty(self._n, dtype=object)
        out[:] = self.store.read(self.name, self.positions()) if self._n else []
        return out

    def value(self, row: int) -> Any:
        return self.store.read(self.name, self.positions()[row:row + 1])[0]

    def blocks(self, rows: int = BLOCK_ROWS) -> Iterator[list[Any]]:
        pos = self.positions()
        for i in range(0, self._n, rows):
            yield self.store.read(self.name, pos[i:i + rows])

    def __reduce__(self) -> tuple:
        # Another process (a Ray worker) cannot read this machine's temporary files: a
        # pickled column travels as its values.
        return _as_array, (self.values(),)

    def __repr__(self) -> str:
        return f"DiskColumn({self.name!r}, {self._n} rows in {self.store.dir})"


def _as_array(values: np.ndarray) -> np.ndarray:
    return values


def concat_disk(parts: list[DiskColumn]) -> DiskColumn | None:
    """One column over the parts when they all index the same stored column, else None."""
    first = parts[0]
    if any(p.store is not first.store or p.name != first.name for p in parts):
        return None
    return DiskColumn(first.store, first.name, np.concatenate([p.positions() for p in parts]))


