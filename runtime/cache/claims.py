"""Claims: two runs on one score cache compute each sample once.

Before computing samples a run *claims* them in the store: a lease naming its owner
(``host:pid:random``) and an expiry. A handle renews its leases in a background thread
while it is open, so a claim outlives any batch or API call however slow; a claim
lapses when its holder stops renewing (a killed or hung-up process, another host gone)
and at once when its holder was a process on this host that no longer exists. Storing a
value ends its claim; so does ``release`` (a failed batch, a reply that never came).

A run computes what it could claim, then waits for the rest: it polls the store until
each value appears (counted as computed by another run) or its lease lapses (then it
claims and computes it itself). Which run computes a sample decides nothing about its
value: scores are a function of the sample and the node's fingerprint.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("dslrun")
POLL_S = 0.2  # how often a waiting run looks for values another run is computing
HOST = socket.gethostname()


def new_owner() -> str:
    return f"{HOST}:{os.getpid()}:{secrets.token_hex(4)}"


def holder_alive(owner: str) -> bool:
    """False only when the holder was a process on this host that is gone; another host's
    holder is trusted until its lease lapses."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != HOST:
        return True
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


class Lease:
    """Calls ``renew`` every ``every`` seconds from a daemon thread, from ``start`` to ``stop``."""

    def __init__(self, renew: Callable[[], Any], every: float):
        self._renew, self._every = renew, every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="dslrun-lease", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._renew()
            except Exception:  # a store closing under us: the next run re-claims what lapses
                return

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()


def share(store: Any, node: str, ids: list[str], groups: Callable[[list[str]], list[list[str]]],
          work: Callable[[list[str]], None], collect: Callable[[dict[str, Any]], None],
          sleep: Callable[[float], None] = time.sleep, label: str = "") -> int:
    """Compute ``ids`` at most once across runs sharing ``store``.

    ``groups`` cuts ids into the units claimed together (a batch, or all); ``work``
    computes and stores one unit; ``collect`` takes values other runs stored. Returns how
    many samples another run computed. With ``store`` None (nothing to share) every group
    is worked at once.
    """
    if store is None:
        for group in groups(ids):
            work(group)
        return 0
    pending, waited, said = list(ids), 0, False
    while pending:
        elsewhere: list[str] = []
        progress = False
        for group in groups(pending):
            mine = store.claim(node, group)
            if mine:
                progress = True
                try:
                    work(mine)
                finally:
                    store.release(node, mine)  # whatever was not stored (a failure) is free again
            taken = set(mine)
            elsewhere += [i for i in group if i not in taken]
        if not elsewhere:
            break
        got = store.get_many(node, elsewhere)
        if got:
            collect(got)
            waited += len(got)
            progress = True
        pending = [i for i in elsewhere if i not in got]
        if pending and not progress:
            if not said:
                said = True  # an idle run says why it is idle, once
                log.info("%s: waiting for %d samples that another run sharing the cache is computing",
                         label or node, len(pending))
            sleep(POLL_S)
    return waited
