"""The score store contract in a dict: for tests, and the fallback when no cache file can be made."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dslrun.core.keys import canonical
from dslrun.runtime.cache.claims import Lease, holder_alive, new_owner
from dslrun.runtime.cache.codec import decode, encode
from dslrun.runtime.cache.store import LEASE_S, ReadOnlyStore


@dataclass
class _Shared:
    """What several MemoryStore handles see: one process's stand-in for a shared file."""

    scores: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    claims: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class MemoryStore:
    """The contract in a dict (several handles may share one, as processes share a file).

    Values go through the same JSON encoding as the SQLite store, so a value read back
    is what a cached run would read (a tuple comes back a list, an array an array)."""

    def __init__(self, *, readonly: bool = False, ttl: float = LEASE_S, clock: Callable[[], float] = time.time,
                 shared: _Shared | None = None, path: Path | None = None, autorenew: bool = True):
        self._s = shared or _Shared()
        self.path, self.readonly, self.owner = path, readonly, new_owner()
        self.ttl, self.clock = ttl, clock
        self._lease = Lease(self.renew, ttl / 3) if autorenew and not readonly else None

    def handle(self, **kw: Any) -> MemoryStore:
        """Another handle (another owner) on the same data, as a second process would open it."""
        return MemoryStore(shared=self._s, ttl=self.ttl, clock=self.clock, path=self.path, **kw)

    def close(self) -> None:
        if self._lease is not None:
            self._lease.stop()
        with self._s.lock:
            for key in [k for k, (o, _) in self._s.claims.items() if o == self.owner]:
                del self._s.claims[key]

    def register(self, node: str, op: str, version: str, params: Mapping[str, Any], model: str) -> None:
        if self.readonly:
            return
        now = self.clock()
        with self._s.lock:
            old = self._s.nodes.get(node)
            self._s.nodes[node] = {"op": op, "version": version, "params": canonical(params), "model": model,
                                   "created": old["created"] if old else now, "last_used": now}

    def get_many(self, node: str, ids: Iterable[str]) -> dict[str, Any]:
        with self._s.lock:
            found = [(sid, self._s.scores.get((node, sid))) for sid in dict.fromkeys(ids)]
        return {sid: decode(row[0]) for sid, row in found if row is not None}

    def count(self, node: str, ids: Iterable[str]) -> int:
        with self._s.lock:
            return sum((node, sid) in self._s.scores for sid in dict.fromkeys(ids))

    def put_many(self, node: str, items: Iterable[tuple[str, Any]]) -> int:
        rows = [(sid, encode(v)) for sid, v in items]  # encode all first: a bad value stores nothing
        if self.readonly:
            return 0
        now = self.clock()
        with self._s.lock:
            for sid, text in rows:
                self._s.scores[(node, sid)] = (text, now)
                self._s.claims.pop((node, sid), None)
        return len(rows)

    def ls(self) -> list[dict[str, Any]]:
        with self._s.lock:
            out = []
            for node, d in self._s.nodes.items():
                vals = [t for (n, _), (t, _) in self._s.scores.items() if n == node]
                out.append({"node": node, "op": d["op"], "version": d["version"], "model": d["model"],
                            "last_used": d["last_used"], "samples": len(vals),
                            "bytes": sum(len(t.encode("utf-8")) for t in vals)})
        return sorted(out, key=lambda r: -r["last_used"])

    def gc(self, older_than_days: float | None = None, ops: Iterable[str] | None = None,
           keep: Iterable[str] = ()) -> int:
        if self.readonly:
            raise ReadOnlyStore("the score cache is read-only: nothing can be deleted")
        keep, ops = set(keep), set(ops or ())
        cutoff = None if older_than_days is None else self.clock() - older_than_days * 86400
        with self._s.lock:
            victims = {n for n, d in self._s.nodes.items() if n not in keep
                       and (cutoff is None or d["last_used"] < cutoff) and (not ops or d["op"] in ops)}
            gone = [k for k in self._s.scores if k[0] in victims]
            for k in gone:
                del self._s.scores[k]
            for n in victims:
                del self._s.nodes[n]
        return len(gone)

    def claim(self, node: str, ids: Iterable[str]) -> list[str]:
        ids = list(dict.fromkeys(ids))
        if self.readonly:
            return ids
        now, alive = self.clock(), {}
        with self._s.lock:
            mine = []
            for sid in ids:
                if (node, sid) in self._s.scores:
                    continue
                held = self._s.claims.get((node, sid))
                if held is not None and held[0] != self.owner and held[1] > now:
                    if held[0] not in alive:
                        alive[held[0]] = holder_alive(held[0])
                    if alive[held[0]]:
                        continue
                mine.append(sid)
            for sid in mine:
                self._s.claims[(node, sid)] = (self.owner, now + self.ttl)
        if mine and self._lease is not None:
            self._lease.start()
        return mine

    def release(self, node: str, ids: Iterable[str]) -> None:
        with self._s.lock:
            for sid in ids:
                if self._s.claims.get((node, sid), ("",))[0] == self.owner:
                    del self._s.claims[(node, sid)]

    def renew(self) -> int:
        until = self.clock() + self.ttl
        with self._s.lock:
            keys = [k for k, (o, _) in self._s.claims.items() if o == self.owner]
            for k in keys:
                self._s.claims[k] = (self.owner, until)
        return len(keys)
