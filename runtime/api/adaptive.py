"""How many calls to keep in flight: a limit that adapts to the server, under ``concurrency`` (the ceiling).

The algorithm is AIMD with slow start, whose growth test is a throughput gradient
(Little's law) rather than a latency tolerance:

* **start moderate**: ``min(ceiling, 8)`` calls in flight;
* **grow while it pays**: after each window (as many replies as the limit, all sent at the
  current limit), the window's throughput is estimated by Little's law,
  ``limit / median(seconds per completion token)``. Slow start doubles the limit while each
  doubling gains at least ``min_gain`` (10%) over the best throughput so far; then the limit
  returns to the best one and grows by one per window while throughput stays within
  ``tolerance`` (10%) of the best, and returns to the best limit when it falls further;
* **back off multiplicatively** on a 429, a timeout, a 5xx or a dropped connection:
  ``limit × decrease`` (0.5), at most once per window (replies to calls sent before the
  cut do not cut again), and the slow start ends.

Why not a latency-tolerance limiter (Netflix's gradient, TCP Vegas): they treat latency
above the minimum as queueing and shrink. An LLM server batches: at twice the calls in
flight each call is slower (every decode step carries more sequences), yet tokens per
second rise, up to the batch the server can hold: with a step costing ``a + b·n`` for ``n``
sequences, a 2x latency tolerance stops near ``n = a/b``, at half the reachable throughput. Little's law turns the same latency
signal into what matters: more concurrency is kept only while latency grows more slowly than
concurrency, i.e. while it buys throughput. Server-side queueing (latency growing in
proportion to concurrency) then shows as flat throughput, and growth stops.

The clock is injected (``clock``), so tests drive the latency signal with a fake one. One
instance lives on one event loop (the pool's), so it needs no lock.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

CONGESTION = frozenset({"rate_limited", "timeout", "server_error", "connection"})


@dataclass
class AdaptiveConcurrency:
    ceiling: int
    start: int = 8
    floor: int = 1
    decrease: float = 0.5
    tolerance: float = 0.1
    min_gain: float = 0.1
    clock: Callable[[], float] = time.monotonic
    limit: int = field(init=False)
    epoch: int = field(default=0, init=False)  # bumped at every change: a window is one epoch's replies
    slow_start: bool = field(default=True, init=False)
    best: tuple[float, int] | None = field(default=None, init=False)  # (throughput, limit)
    history: list[tuple[str, int]] = field(default_factory=list, init=False)  # (why, new limit)
    _window: list[float] = field(default_factory=list, init=False)
    _drained: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.ceiling < 1:
            raise ValueError("the concurrency ceiling must be at least 1")
        self.limit = max(self.floor, min(self.ceiling, self.start))
        self.initial = self.limit

    @property
    def path(self) -> list[int]:
        """The limits this run went through, from the first."""
        return [self.initial, *(n for _, n in self.history)]

    def sent(self) -> tuple[int, float]:
        """A call goes out: the token to report its outcome with."""
        return self.epoch, self.clock()

    def drained(self) -> None:
        """No request is left to send: slots stay empty, so throughput says nothing about the limit."""
        self._drained = True

    def succeeded(self, token: tuple[int, float], output_tokens: int) -> None:
        epoch, t0 = token
        if epoch != self.epoch:
            return
        self._window.append((self.clock() - t0) / max(1, output_tokens))
        if len(self._window) < self.limit:
            return
        per_token = statistics.median(self._window)
        throughput = self.limit / per_token if per_token > 0 else float("inf")
        best = self.best
        if throughput > (best[0] if best else 0.0):
            self.best = (throughput, self.limit)
        if self._drained:
            self._change("drained", self.limit)
        elif self.slow_start and (best is None or throughput >= best[0] * (1 + self.min_gain)):
            self._change("grow", min(self.ceiling, self.limit * 2))
        elif not self.slow_start and best is not None and throughput >= best[0] * (1 - self.tolerance):
            self._change("grow", min(self.ceiling, self.limit + 1))
        else:  # doubling did not pay, or throughput fell: back to the best limit, then probe by one
            self.slow_start = False
            self._change("flat", self.best[1] if self.best else self.limit)

    def congested(self, token: tuple[int, float], kind: str) -> None:
        """A call failed with ``kind``; only ``CONGESTION`` kinds say the server is overloaded."""
        if kind not in CONGESTION or token[0] != self.epoch:
            return
        self.slow_start, self.best = False, None  # the server's capacity changed or was overrun
        self._change(kind, max(self.floor, int(self.limit * self.decrease)))

    def _change(self, why: str, limit: int) -> None:
        self.epoch += 1
        self._window = []
        if limit != self.limit:
            self.history.append((why, limit))
        self.limit = limit


class Slots:
    """An asyncio gate admitting calls while fewer than ``limit()`` are in flight (the limit may move)."""

    def __init__(self, limit: Callable[[], int]):
        self.limit, self.in_flight = limit, 0
        self._freed = asyncio.Event()

    async def acquire(self) -> None:
        while self.in_flight >= self.limit():
            await self._freed.wait()
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        self._freed.set()
        self._freed = asyncio.Event()
