"""Per-sample score cache in SQLite (WAL, one transaction per batch).

A row is keyed by (node fingerprint, sample id). The fingerprint is derived,
never hand-written: operator name + operator version + canonical parameters
(those that change results) + model identity. So a re-run that changes only a
downstream threshold finds every score; a pool that grows computes only its new
samples; a run killed at any point loses at most the batch in flight.

Values are JSON; numpy arrays (embeddings, gradient features) are stored as
typed base64 so a float16 vector costs 2 bytes a dimension.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dslrun.core.keys import canonical

SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    node TEXT NOT NULL,
    sample TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (node, sample)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY,
    op TEXT NOT NULL,
    version TEXT NOT NULL,
    params TEXT NOT NULL,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    last_used REAL NOT NULL
);
"""
CHUNK = 500  # SQLite's host-parameter limit is 999 on old builds


def encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_encode_default)


def _encode_default(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        data = base64.b64encode(np.ascontiguousarray(x).tobytes()).decode("ascii")
        return {"__nd__": [x.dtype.str, list(x.shape), data]}
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"cannot cache a {type(x).__name__}")


def _decode_hook(d: dict) -> Any:
    nd = d.get("__nd__")
    if nd is not None and len(d) == 1:
        dtype, shape, data = nd
        return np.frombuffer(base64.b64decode(data), dtype=np.dtype(dtype)).reshape(shape)
    return d


def decode(text: str) -> Any:
    return json.loads(text, object_hook=_decode_hook)


class ScoreCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process kills
        # Sample ids are hashes, so inserts land all over the B-tree: a 64 MiB page cache and
        # a checkpoint every 64 MiB of WAL instead of every 4 MiB commit a large pool's batches
        # ~1.5x faster (500k rows: 19.6 s -> 13.0 s). Durability is unchanged (WAL + NORMAL).
        self._db.execute("PRAGMA cache_size=-65536")
        self._db.execute("PRAGMA wal_autocheckpoint=16384")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def register(self, node: str, op: str, version: str, params: Mapping[str, Any], model: str) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO nodes(node, op, version, params, model, created, last_used) VALUES (?,?,?,?,?,?,?) "
                "ON CONFLICT(node) DO UPDATE SET last_used=excluded.last_used",
                (node, op, version, canonical(params), model, now, now))

    def get_many(self, node: str, ids: Iterable[str]) -> dict[str, Any]:
        ids = list(dict.fromkeys(ids))
        out: dict[str, Any] = {}
        with self._lock:
            for i in range(0, len(ids), CHUNK):
                part = ids[i:i + CHUNK]
                q = f"SELECT sample, value FROM scores WHERE node=? AND sample IN ({','.join('?' * len(part))})"
                for sample, value in self._db.execute(q, (node, *part)):
                    out[sample] = decode(value)
        return out

    def count(self, node: str, ids: Iterable[str]) -> int:
        ids = list(dict.fromkeys(ids))
        n = 0
        with self._lock:
            for i in range(0, len(ids), CHUNK):
                part = ids[i:i + CHUNK]
                q = f"SELECT count(*) FROM scores WHERE node=? AND sample IN ({','.join('?' * len(part))})"
                n += self._db.execute(q, (node, *part)).fetchone()[0]
        return n

    def put_many(self, node: str, items: Iterable[tuple[str, Any]]) -> int:
        """Store one batch atomically: all of it is visible after a crash, or none."""
        now = time.time()
        rows = [(node, sid, encode(v), now) for sid, v in items]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO scores(node, sample, value, created) VALUES (?,?,?,?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(rows)

    def ls(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT n.node, n.op, n.version, n.model, n.last_used, count(s.sample), "
                "coalesce(sum(length(s.value)), 0) FROM nodes n LEFT JOIN scores s ON s.node = n.node "
                "GROUP BY n.node ORDER BY n.last_used DESC").fetchall()
        return [{"node": r[0], "op": r[1], "version": r[2], "model": r[3], "last_used": r[4],
                 "samples": r[5], "bytes": r[6]} for r in rows]

    def gc(self, older_than_days: float | None = None, ops: Iterable[str] | None = None,
           keep: Iterable[str] = ()) -> int:
        """Delete whole nodes (not used for ``older_than_days``, or of ``ops``), except ``keep``."""
        keep = set(keep)
        clauses: list[str] = []
        args: list[Any] = []
        if older_than_days is not None:
            clauses.append("last_used < ?")
            args.append(time.time() - older_than_days * 86400)
        if ops:
            ops = list(ops)
            clauses.append(f"op IN ({','.join('?' * len(ops))})")
            args.extend(ops)
        where = " AND ".join(clauses) or "1"
        with self._lock:
            victims = [r[0] for r in self._db.execute(f"SELECT node FROM nodes WHERE {where}", args)
                       if r[0] not in keep]
            self._db.execute("BEGIN IMMEDIATE")
            n = 0
            for node in victims:
                n += self._db.execute("DELETE FROM scores WHERE node=?", (node,)).rowcount
                self._db.execute("DELETE FROM nodes WHERE node=?", (node,))
            self._db.execute("COMMIT")
            if n:
                self._db.execute("VACUUM")  # give the space back to the file system
        return n
