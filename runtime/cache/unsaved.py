"""Paid replies the score cache could not take, and what to tell the user about a failed write.

When the cache cannot be written (a full disk, a permission, a read-only file system), an
API step stops spending, but the replies already paid for must not be lost: each one goes,
as it lands, to a side file ``OUT/unsaved-replies.jsonl`` (one JSON line: node fingerprint,
sample id, cached values), or to the temporary folder if ``OUT`` cannot take it either. The
next run of the step imports the file's lines for its node into the cache before it asks
for anything, so no reply is paid for twice.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SIDE_FILE = "unsaved-replies.jsonl"


def describe_write_error(exc: BaseException, path: Path | str) -> str:
    """``no space left on DIR``, ``permission denied: PATH``, … for a failed write under *path*."""
    path = Path(path)
    where = path if path.is_dir() else path.parent
    code = getattr(exc, "errno", None)
    text = str(exc).lower()
    if code == errno.ENOSPC or code == errno.EDQUOT or "disk is full" in text:
        return f"no space left on {where}"
    if code in (errno.EACCES, errno.EPERM) or "readonly database" in text:
        return f"permission denied: {getattr(exc, 'filename', None) or path}"
    if code == errno.ELOOP:  # out_paths.UnsafeOutput, or a link where a file was opened without following
        return f"refused to write {getattr(exc, 'filename', None) or path}: {getattr(exc, 'strerror', None) or exc}"
    if code == errno.EROFS:
        return f"read-only file system: {getattr(exc, 'filename', None) or path}"
    return f"cannot write {path}: {type(exc).__name__}: {exc}"


def is_write_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError | sqlite3.OperationalError | sqlite3.DatabaseError)


class SideFile:
    """Appends replies to ``OUT/unsaved-replies.jsonl``, falling back to the temporary folder."""

    def __init__(self, out_dir: Path):
        self.candidates = [Path(out_dir) / SIDE_FILE,
                           Path(tempfile.gettempdir()) / f"dslrun-{os.getpid()}-{SIDE_FILE}"]
        self.path: Path | None = None
        self.kept = self.lost = 0
        self._lock = threading.Lock()

    def add(self, node: str, sample: str, values: Any) -> None:
        line = json.dumps({"node": node, "sample": sample, "value": values}) + "\n"
        with self._lock:
            for path in ([self.path] if self.path else []) + self.candidates:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    # never through a link: OUT may hold one, and the fallback's name in /tmp is known
                    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
                    with open(fd, "a", encoding="utf-8") as f:
                        f.write(line)
                        f.flush()
                        os.fsync(f.fileno())
                except OSError:
                    continue
                self.path = path
                self.kept += 1
                return
            self.lost += 1

    def where(self) -> str:
        said = f"{self.kept} paid replies kept in {self.path}" if self.kept else "no reply was waiting"
        if self.lost:
            said += f"; {self.lost} could not be written anywhere"
        return said


def import_unsaved(out_dir: Path, node: str, put_many: Any) -> int:
    """Move this node's replies from ``OUT/unsaved-replies.jsonl`` into the cache; other
    nodes' lines stay. Returns how many were imported."""
    path = Path(out_dir) / SIDE_FILE
    if not path.exists():
        return 0
    mine: list[tuple[str, Any]] = []
    rest: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by the failure itself
            continue
        if entry.get("node") == node:
            mine.append((entry["sample"], entry["value"]))
        else:
            rest.append(line)
    if not mine:
        return 0
    put_many(node, mine)
    if rest:
        write_lines(path, rest)
    else:
        path.unlink()
    return len(mine)


def write_lines(path: Path, lines: Iterable[str]) -> None:
    from dslrun.runtime.data.pool_files import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text("".join(f"{ln}\n" for ln in lines), encoding="utf-8"))
