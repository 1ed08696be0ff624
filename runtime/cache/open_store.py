"""Opening the score cache of a run: damaged, read-only and rolled-back files included.

* Damaged (truncated, flipped bytes in its structure, not a database): ``PRAGMA
  quick_check`` at open finds it; the file (with its ``-wal``/``-shm``) is moved aside to
  ``scores.sqlite.corrupt-<UTC time>`` and the run continues on a fresh file, with a
  warning that says what was lost (scores and nodes when they can still be counted,
  else the file's size). Bytes flipped inside a value (not the structure) are found when
  the value is read: it is computed again and replaced (``sqlite_store.get_many``).
* Read-only (the file or its folder cannot be written): opened read-only, one warning;
  cached scores are served, missing ones computed and not stored. No folder and none
  can be made: an in-memory store, one warning.
* Rolled back (its ``-wal`` deleted after an unclean stop, or the file replaced by an
  older copy): the database counts its committed batches (``meta.seq``) and a side file
  ``scores.sqlite.seq`` keeps the highest count seen; fewer batches at open than the side
  file says means commits were lost: a warning names how many batches and scores.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dslrun.runtime.cache.memory import MemoryStore
from dslrun.runtime.cache.sqlite import SqliteStore

DB = "scores.sqlite"
Warn = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def open_store(cache_dir: Path, warn: Warn = _stderr) -> Any:
    """The run's score store in ``cache_dir``; problems become one warning each, never an error."""
    path = Path(cache_dir) / DB
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return _readonly(path, warn) if path.exists() else _memory(path, warn, e)
    with _exclusive(path):
        if _exists(path):
            try:
                problem = _check(path)
            except sqlite3.OperationalError as e:
                if not _is_readonly(e):
                    raise
                return _readonly(path, warn)
            if problem is not None:
                _move_aside(path, problem, warn)
        fresh = not path.exists()
        mark = Mark(path)
        if fresh:
            mark.clear()
        try:
            store = SqliteStore(path, on_commit=mark.write)
        except (sqlite3.OperationalError, PermissionError) as e:
            if not _is_readonly(e):
                raise
            return _readonly(path, warn) if path.exists() and not fresh else _memory(path, warn, e)
        if not fresh:
            mark.check(store, warn)
        return store


def _exists(path: Path) -> bool:
    return path.exists() or Path(f"{path}-wal").exists()


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One process at a time checks, moves aside and creates (two runs starting on one damaged
    file must not move each other's fresh file aside)."""
    try:
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield  # a folder we cannot write: nothing will be moved or created
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _is_damage(e: sqlite3.DatabaseError) -> bool:
    name = getattr(e, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or (
        not name and ("malformed" in str(e) or "not a database" in str(e)))


def _is_readonly(e: Exception) -> bool:
    if isinstance(e, PermissionError):
        return True
    name = getattr(e, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH"))


def _check(path: Path, uri: str | None = None) -> str | None:
    """None if the database reads whole, else what is wrong with it."""
    db = sqlite3.connect(uri or str(path), uri=uri is not None, timeout=60)
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as e:
        if _is_damage(e):
            return str(e)
        raise
    finally:
        db.close()
    if rows == [("ok",)]:
        return None
    said = " ".join(str(r[0]) for r in rows[:4]).replace("*** in database main ***", "").split()
    return " ".join(said)[:160]


def _contents(path: Path) -> str:
    """What a damaged file held, as far as it can still be counted."""
    size = sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists())
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            scores = db.execute("SELECT count(*) FROM scores").fetchone()[0]
            nodes = db.execute("SELECT count(*) FROM nodes").fetchone()[0]
        finally:
            db.close()
        return f"{scores} cached scores of {nodes} nodes ({size / 1e6:.1f} MB)"
    except sqlite3.Error:
        return f"a {size / 1e6:.1f} MB file whose contents cannot be counted"


def _move_aside(path: Path, problem: str, warn: Warn) -> None:
    what = _contents(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{path}{suffix}", f"{aside}{suffix}")
    warn(f"the score cache {path} is damaged ({problem}); moved it aside to {aside.name} and started a "
         f"fresh cache: {what} are lost and will be computed again")


def _readonly(path: Path, warn: Warn) -> Any:
    """Serve what a cache we may not write holds. Without write access SQLite cannot make the
    WAL index (``-shm``), so a cache with no ``-wal`` is opened immutable (nothing can be missed);
    with one it needs the ``-shm`` its writer left."""
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    uris = [f"file:{path}?mode=ro"] if wal.exists() and wal.stat().st_size and shm.exists() else []
    uris.append(f"file:{path}?immutable=1")
    for uri in uris:
        try:
            problem = _check(path, uri)
            if problem is not None:
                warn(f"the score cache {path} is damaged ({problem}) and read-only: it is not used; "
                     "scores are computed and not stored")
                return MemoryStore(path=path)
            store = SqliteStore(path, readonly=True, uri=uri)
        except sqlite3.OperationalError:
            continue
        unseen = " (scores in its -wal file are not visible without its -shm)" if (
            "immutable" in uri and wal.exists() and wal.stat().st_size) else ""
        warn(f"the score cache {path} is read-only: cached scores are used{unseen}; missing ones are computed "
             "and not stored")
        return store
    warn(f"the score cache {path} cannot be read; scores are computed and not stored")
    return MemoryStore(path=path)


def _memory(path: Path, warn: Warn, e: Exception) -> MemoryStore:
    warn(f"no score cache can be made at {path} ({e}); scores are computed and not stored")
    return MemoryStore(path=path)


class Mark:
    """The side file that remembers how many batches the database had committed (``meta.seq``)
    and how many scores they wrote, so a rollback is noticed at the next open."""

    def __init__(self, db: Path):
        self.file = Path(f"{db}.seq")
        self.rows = 0  # scores this process committed (added to the mark's count)
        self._seen = 0

    def read(self) -> dict[str, int]:
        try:
            got = json.loads(self.file.read_text())
            return {"seq": int(got["seq"]), "rows": int(got["rows"])}
        except (OSError, ValueError, KeyError, TypeError):
            return {"seq": 0, "rows": 0}

    def write(self, seq: int, rows: int = 0) -> None:
        """After a commit: cheap enough per batch or API reply (one small file replaced, no fsync:
        it guards against a lost WAL, which a crash of the OS loses with it anyway)."""
        if seq <= self._seen:
            return
        self._seen = seq
        tmp = self.file.with_name(f"{self.file.name}.{os.getpid()}.tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps({"seq": seq, "rows": rows}))
            os.replace(tmp, self.file)

    def clear(self) -> None:
        with contextlib.suppress(OSError):
            self.file.unlink()

    def check(self, store: SqliteStore, warn: Warn) -> None:
        marked, seq, rows = self.read(), store.seq(), store.rows()
        if marked["seq"] > seq:
            lost_rows = max(0, marked["rows"] - rows)
            warn(f"the score cache {store.path} lost {marked['seq'] - seq} committed batches "
                 f"({lost_rows} scores): its -wal file was deleted or the file was replaced by an older copy "
                 "after an unclean stop; they will be computed again")
        self._seen = seq
        with contextlib.suppress(OSError):
            self.file.write_text(json.dumps({"seq": seq, "rows": rows}))
