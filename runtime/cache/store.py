"""The score store contract, and the in-memory store.

A store holds one value per (node fingerprint, sample id) and the nodes' descriptions.
Every store passes ``tests/test_score_store.py`` (one suite, parametrised over stores):

* values round-trip (numbers, strings, lists, dicts, numpy arrays of any dtype/shape);
* ``put_many`` is atomic (all of a batch is visible, or none) and a re-put replaces;
* ids never stored are absent from ``get_many`` (no ``None`` placeholders);
* ``gc`` deletes whole nodes; ``ls`` lists nodes with their sample counts;
* claims: ``claim`` gives this handle's owner the ids nobody else holds (a lease that
  ``renew`` extends and that lapses at its expiry, or at once when its holder's process on
  this host is gone); storing a value or ``release`` ends a claim;
* a read-only handle serves what is stored, stores nothing, claims everything (it cannot
  tell anyone) and refuses ``gc``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

LEASE_S = 30.0  # a claim lapses this long after its holder last renewed it


class ReadOnlyStore(PermissionError):
    """A write that a read-only store cannot do (``gc``)."""


class ScoreStore(Protocol):
    path: Path | None  # the file behind the store; None in memory
    owner: str  # who this handle claims as: host:pid:random
    readonly: bool

    def register(self, node: str, op: str, version: str, params: Mapping[str, Any], model: str) -> None: ...
    def get_many(self, node: str, ids: Iterable[str]) -> dict[str, Any]: ...
    def count(self, node: str, ids: Iterable[str]) -> int: ...
    def put_many(self, node: str, items: Iterable[tuple[str, Any]]) -> int: ...
    def ls(self) -> list[dict[str, Any]]: ...
    def gc(self, older_than_days: float | None = None, ops: Iterable[str] | None = None,
           keep: Iterable[str] = ()) -> int: ...
    def claim(self, node: str, ids: Iterable[str]) -> list[str]: ...
    def release(self, node: str, ids: Iterable[str]) -> None: ...
    def renew(self) -> int: ...
    def close(self) -> None: ...
