"""Requests- and tokens-per-minute limits as token buckets, shared per endpoint.

A bucket holds at most ``capacity`` tokens and refills at ``rate`` per second.
Callers *reserve* tokens: the bucket may go into debt and the caller sleeps
until its share has refilled. Reservations are taken in call order, so waiters
are served first come, first served; the long-run rate is exactly ``rate``
with no drift from scheduling delays, and after an idle spell at most
``capacity`` requests go out back to back. The default capacities are small
(a tenth of a second of requests, a second of tokens), not a minute's burst:
providers enforce their limits over short windows and a burst of a minute's
quota is what starts a 429 storm. A new request bucket starts with one token,
so a run starts at the limit's pace rather than with a burst.

State is guarded by a ``threading.Lock`` and waiting uses ``asyncio.sleep`` in
the caller's loop, so one limiter serves pools running in several threads.

Every node that talks to the same endpoint (base_url + model) must share one
limiter: ``limiter_for(base_url, model, rpm=..., tpm=...)`` returns it from a
process-wide registry; asking again with tighter limits tightens it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]


class TokenBucket:
    def __init__(self, rate: float, capacity: float, *, initial: float | None = None,
                 clock: Clock = time.monotonic):
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"rate and capacity must be positive (got {rate}, {capacity})")
        self.rate, self.capacity, self._clock = float(rate), float(capacity), clock
        self._tokens = float(capacity if initial is None else min(initial, capacity))
        self._stamp = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    @property
    def tokens(self) -> float:
        with self._lock:
            self._refill()
            return self._tokens

    def reserve(self, n: float = 1.0) -> float:
        """Take ``n`` tokens now (possibly into debt); return the seconds to wait before use."""
        with self._lock:
            self._refill()
            self._tokens -= n
            return max(0.0, -self._tokens / self.rate)

    def refund(self, n: float) -> None:
        """Give back tokens that were reserved but not used (never above capacity)."""
        with self._lock:
            self._refill()
            self._tokens = min(self.capacity, self._tokens + n)

    def charge(self, n: float) -> None:
        """Take tokens without waiting (e.g. a reply used more tokens than estimated)."""
        with self._lock:
            self._refill()
            self._tokens -= n

    async def acquire(self, n: float = 1.0) -> float:
        wait = self.reserve(n)
        if wait > 0:
            try:
                await asyncio.sleep(wait)
            except asyncio.CancelledError:
                self.refund(n)
                raise
        return wait

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}/s, capacity={self.capacity:g})"


class RateLimiter:
    """The rpm and tpm buckets of one endpoint, plus a pause honouring ``Retry-After``."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None, *,
                 request_burst: float | None = None, token_burst: float | None = None,
                 clock: Clock = time.monotonic, endpoint: str = ""):
        self.endpoint, self._clock = endpoint, clock
        self.rpm, self.tpm = rpm, tpm
        self._request_burst, self._token_burst = request_burst, token_burst
        self.requests = self._bucket(rpm, request_burst, 1 / 600, initial=1.0)
        self.tokens = self._bucket(tpm, token_burst, 1 / 60)
        self._not_before = 0.0
        self._lock = threading.Lock()

    def _bucket(self, per_min: float | None, burst: float | None, frac: float,
                initial: float | None = None) -> TokenBucket | None:
        if per_min is None:
            return None
        if per_min <= 0:
            raise ValueError(f"a per-minute limit must be positive, got {per_min}")
        capacity = burst if burst is not None else max(1.0, per_min * frac)
        return TokenBucket(per_min / 60, capacity, initial=initial, clock=self._clock)

    def defer(self, seconds: float) -> None:
        """Hold every request on this endpoint for ``seconds`` (a 429 said ``Retry-After``)."""
        with self._lock:
            self._not_before = max(self._not_before, self._clock() + seconds)

    async def acquire(self, tokens: float = 0.0) -> float:
        """Wait until one request of about ``tokens`` tokens may go out; return seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                pause = self._not_before - self._clock()
            if pause <= 0:
                break
            await asyncio.sleep(pause)
            waited += pause
        if self.requests is not None:
            waited += await self.requests.acquire(1)
        if self.tokens is not None and tokens > 0:
            try:
                waited += await self.tokens.acquire(tokens)
            except asyncio.CancelledError:
                if self.requests is not None:
                    self.requests.refund(1)
                raise
        return waited

    def settle(self, estimated: float, actual: float) -> None:
        """Correct the tpm bucket once a reply's real token count is known."""
        if self.tokens is None or actual == estimated:
            return
        if actual > estimated:
            self.tokens.charge(actual - estimated)
        else:
            self.tokens.refund(estimated - actual)

    def tighten(self, rpm: float | None, tpm: float | None) -> None:
        """Lower the limits to ``rpm``/``tpm`` where those are tighter (never raises them)."""
        if rpm is not None and (self.rpm is None or rpm < self.rpm):
            self.rpm, self.requests = rpm, self._bucket(rpm, self._request_burst, 1 / 600, 1.0)
        if tpm is not None and (self.tpm is None or tpm < self.tpm):
            self.tpm, self.tokens = tpm, self._bucket(tpm, self._token_burst, 1 / 60)

    def __repr__(self) -> str:
        return f"RateLimiter(endpoint={self.endpoint!r}, rpm={self.rpm}, tpm={self.tpm})"


def endpoint_key(base_url: str | None, model: str) -> str:
    """The identity of a rate-limited endpoint: normalised base URL + model."""
    url = (base_url or "https://api.openai.com/v1").strip().rstrip("/")
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}{sep}{host.lower()}{slash}{path} {model}"


class LimiterRegistry:
    def __init__(self) -> None:
        self._limiters: dict[str, RateLimiter] = {}
        self._lock = threading.Lock()

    def get(self, endpoint: str, rpm: float | None = None, tpm: float | None = None) -> RateLimiter:
        with self._lock:
            limiter = self._limiters.get(endpoint)
            if limiter is None:
                limiter = self._limiters[endpoint] = RateLimiter(rpm, tpm, endpoint=endpoint)
            else:
                limiter.tighten(rpm, tpm)
            return limiter

    def clear(self) -> None:
        with self._lock:
            self._limiters.clear()


REGISTRY = LimiterRegistry()


def limiter_for(base_url: str | None, model: str, *, rpm: float | None = None,
                tpm: float | None = None) -> RateLimiter:
    """The process-wide limiter of the endpoint ``base_url`` + ``model``."""
    return REGISTRY.get(endpoint_key(base_url, model), rpm, tpm)
