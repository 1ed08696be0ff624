"""Values read from byte spans of a file, and the folders a run's spilled columns live in.

A pool read through Arrow keeps each record in the pool file: ``SourceLines`` is the file
plus each record's byte span (a JSONL line, a JSON array's element), and a ``DiskColumn`` of
it is the rows a table has. Taking, masking and slicing a table compose those row indices and
read nothing; only a step that asks for the records (``save``) reads them, and only its own
rows.

Values are read with ``pread``, one read per run of nearby values, not through ``mmap``:
the pages a mapping touches count in the process's resident memory (with read-ahead, most
of a file for scattered reads such as a ranked subset's records), and the point is a
driver whose peak memory does not grow with the pool's text.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dslrun.runtime.data.lazy_column import StoredColumn

GAP = 64 * 1024  # bytes between two wanted values still read through rather than skipped
SPAN = 8 * 2**20  # the most bytes one read brings in


def read_spans(path: str | Path, first: np.ndarray, last: np.ndarray, positions: np.ndarray,
               decode: Callable[[bytes], Any]) -> list[Any]:
    """``decode`` of the file's bytes ``first[p]:last[p]`` for each of ``positions``, in that order."""
    positions = np.asarray(positions, dtype=np.int64)
    order = np.argsort(positions, kind="stable")
    starts, ends = first[positions[order]].tolist(), last[positions[order]].tolist()
    values: list[Any] = [None] * len(positions)
    fd = os.open(path, os.O_RDONLY)
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


def spill_dir(root: str | Path | None) -> Path:
    """A fresh folder for a table's spilled columns under ``root`` (the temp dir by default);
    folders of killed runs on this host are removed first."""
    if root is not None:
        Path(root).mkdir(parents=True, exist_ok=True)
    prefix = f"dslrun-columns-{socket.gethostname()}-{os.getpid()}-"
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    remove_orphans(folder.parent)
    return folder


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


class DiskColumn(StoredColumn):
    """Some rows of a ``SourceLines`` column, in a table's order."""

    @classmethod
    def of(cls, store: Any, name: str) -> DiskColumn:
        return cls(store, name, None, store.rows)


class SourceLines:
    """The records of a pool file (JSONL lines, a JSON array's elements) as a store of one column
    (``_record``): each row's record is decoded from the file when a step asks for it (``save``),
    so a pool read through Arrow never holds its records. The file must not change while a run
    reads it; if its size or modification time moves, reading fails rather than returning other
    records."""

    def __init__(self, path: str | Path, starts: np.ndarray, ends: np.ndarray):
        self.dir = Path(path)
        self.starts, self.ends = starts, ends  # each row's record: file bytes [start, end)
        self.rows = len(starts)
        st = os.stat(path)
        self._stamp = (st.st_size, st.st_mtime_ns)

    def read(self, name: str, positions: np.ndarray) -> list[Any]:
        st = os.stat(self.dir)
        if (st.st_size, st.st_mtime_ns) != self._stamp:
            raise RuntimeError(f"{self.dir}: the pool file changed during the run; run again")
        return read_spans(self.dir, self.starts, self.ends, positions, json.loads)
