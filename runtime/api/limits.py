"""Requests- and tokens-per-minute limits as token buckets, shared per endpoint.

A bucket holds at most ``capacity`` tokens and refills at ``rate`` per second. A
caller is admitted when the tokens it needs are in the bucket *at the moment it is
admitted*, in call order (first come, first served); while it waits, it sleeps for the
time the missing tokens take to refill and then looks again. Nothing is promised ahead
of time: a scheme that hands out future slots (the bucket going into debt, each caller
sleeping until its slot) bursts whenever the event loop stalls, because every caller
whose slot passed during the stall goes at once. That is how a run with rpm 300 and
concurrency 16 used to send its first 16 requests within 16 ms: the first call's
``import openai`` held the loop for seconds. Here a stall refills at most ``capacity``
tokens, so at most ``capacity`` requests go out together, whatever the machine's speed.
The price: a caller woken late starts the next interval late, so under load the rate
falls slightly below the limit, never above it.

The first minute. The request bucket's capacity is a tenth of a second of requests (at
least one), not a minute's burst: providers enforce their limits over short windows and
a burst of a minute's quota is what starts a 429 storm. A new bucket starts with one
token rather than full or empty: full would allow ``capacity`` at once at start, empty
would make the first request of a slow endpoint (rpm 3) wait 20 s for nothing. With one
token, any window of W seconds from the start holds at most 1 + rate·W admissions: at
rpm 300 the first 5 s send 25 requests (at 0, 0.2, …, 4.8 s), the first minute 300.
Tokens (tpm) get a second of capacity and start full; a request estimated larger than
the capacity goes when the bucket is full and leaves it in debt.

State is guarded by a ``threading.Lock`` and waiting sleeps in the caller's loop
(``sleep``, ``asyncio.sleep`` unless a test injects a fake clock's), so one limiter
serves pools running in several threads.

Every node that talks to the same endpoint (base_url + model) must share one
limiter: ``limiter_for(base_url, model, rpm=..., tpm=...)`` returns it from a
process-wide registry; asking again with tighter limits tightens it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
EPS = 1e-9


class _Waiter:
    __slots__ = ("n", "need")

    def __init__(self, n: float, need: float):
        self.n, self.need = n, need


class TokenBucket:
    def __init__(self, rate: float, capacity: float, *, initial: float | None = None,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"rate and capacity must be positive (got {rate}, {capacity})")
        self.rate, self.capacity, self._clock, self._sleep = float(rate), float(capacity), clock, sleep
        self._tokens = float(capacity if initial is None else min(initial, capacity))
        self._stamp = clock()
        self._queue: list[_Waiter] = []
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

    def _try(self, me: _Waiter) -> float:
        """Admit ``me`` if its tokens are here beyond what the callers ahead of it need: 0.0;
        else the seconds until they would be."""
        with self._lock:
            self._refill()
            ahead = 0.0
            for w in self._queue:
                if w is me:
                    break
                ahead += w.need
            if self._tokens - ahead >= me.need - EPS * me.need:  # refills are sums of float products
                self._tokens -= me.n
                self._queue.remove(me)
                return 0.0
            return (ahead + me.need - self._tokens) / self.rate

    def refund(self, n: float) -> None:
        """Give back tokens that were taken but not used (never above capacity)."""
        with self._lock:
            self._refill()
            self._tokens = min(self.capacity, self._tokens + n)

    def charge(self, n: float) -> None:
        """Take tokens without waiting (e.g. a reply used more tokens than estimated)."""
        with self._lock:
            self._refill()
            self._tokens -= n

    async def acquire(self, n: float = 1.0) -> float:
        """Wait until ``n`` tokens are here and it is this caller's turn; take them. Returns
        the seconds waited (by this bucket's clock)."""
        me, t0 = _Waiter(n, min(n, self.capacity)), self._clock()
        with self._lock:
            self._queue.append(me)
        try:
            while (wait := self._try(me)) > 0:
                await self._sleep(wait)
        except BaseException:
            with self._lock:
                if me in self._queue:
                    self._queue.remove(me)
            raise
        return self._clock() - t0

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}/s, capacity={self.capacity:g})"


class RateLimiter:
    """The rpm and tpm buckets of one endpoint, plus a pause honouring ``Retry-After``."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None, *,
                 request_burst: float | None = None, token_burst: float | None = None,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep, endpoint: str = ""):
        self.endpoint, self._clock, self._sleep = endpoint, clock, sleep
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
        return TokenBucket(per_min / 60, capacity, initial=initial, clock=self._clock, sleep=self._sleep)

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
            await self._sleep(pause)
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
