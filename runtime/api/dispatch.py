"""Run many LLM calls concurrently within rate limits, retries and a budget.

``ApiPool.run(requests, send, on_result)`` calls ``send`` for every request with
at most ``max_concurrency`` calls in flight, paced by a shared ``RateLimiter``,
retrying 429/5xx/timeouts/connection errors with backoff (``Retry-After``
first), and hands every outcome to ``on_result`` the moment it is known, so a
caller that writes it to its cache loses nothing already paid for if the
process dies. Every request ends as exactly one ``ApiResult``: ok, failed with
a reason, or not run (budget, stopped); nothing is dropped silently.

The budget (``max_calls``, ``max_cost``) is checked *before* each call with a
worst-case estimate (prompt tokens + ``max_tokens``) that is replaced by the
real cost when the reply arrives; when the next call cannot be afforded the
pool stops dispatching, lets calls in flight finish and reports the rest as
"not run: budget".

An error that every later call would repeat (``STOPS_RUN``: the key refused, 401/403;
the model or URL not found, 404; no quota left) is not retried and stops the run at
once: calls in flight finish, the rest are "not run: stopped", and the summary's
``fatal`` holds the error (the caller decides what to tell the user).

If ``on_result`` raises (the cache cannot be written), the pool stops spending:
nothing new is dispatched, calls in flight finish and are still offered to
``on_result``, and ``run`` raises ``ResultCallbackError`` (with the summary).

Concurrency adapts to the server when ``adaptive`` (``adaptive.py``: AIMD with slow start and
a Little's-law growth test; ``max_concurrency`` is the ceiling), and an attempt's timeout comes
from ``timeouts`` (``timeouts.py``: off for loopback servers, else derived from ``max_tokens``
and the observed seconds per token; a timed-out attempt stays charged to the budget).

``submit()`` runs the same thing on its own event loop in a thread and returns a
``concurrent.futures.Future``, so API work overlaps with model work; ``on_result``
is then called in that thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from dslrun.runtime.api.adaptive import AdaptiveConcurrency, Slots
from dslrun.runtime.api.budget import BudgetTracker, estimate_input_tokens
from dslrun.runtime.api.limits import REGISTRY, RateLimiter
from dslrun.runtime.api.timeouts import AttemptTimeouts
from dslrun.runtime.api.types import (
    STOPS_RUN,
    ApiRequest,
    ApiResult,
    CallError,
    Price,
    Reply,
    RetryPolicy,
    RunSummary,
)

log = logging.getLogger("dslrun.runtime.api")

SendFn = Callable[[ApiRequest], Awaitable[Reply]]
OnResult = Callable[[ApiResult], Any]
ParseFn = Callable[[Reply], Any]


class ResultCallbackError(RuntimeError):
    """``on_result`` raised: the pool stopped dispatching. ``summary`` holds the counts so far."""

    def __init__(self, summary: RunSummary):
        super().__init__(f"on_result failed; run stopped ({summary})")
        self.summary = summary


def as_send(send: Any) -> SendFn:
    """A ``Backend`` (anything with ``async chat(messages, **opts)``) or a ``SendFn``."""
    chat = getattr(send, "chat", None)
    if chat is not None:
        return lambda req: chat(req.messages, **dict(req.opts))
    if not callable(send):
        raise TypeError(f"send must be a backend or an async callable, got {type(send).__name__}")
    return send


def classify(exc: BaseException) -> CallError:
    if isinstance(exc, CallError):
        return exc
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return CallError("timeout", "no reply within the pool's attempt_timeout")
    if isinstance(exc, ConnectionError | OSError):
        return CallError("connection", f"{type(exc).__name__}: {exc}")
    return CallError("error", f"{type(exc).__name__}: {exc}", retryable=False)


class _Run:
    def __init__(self, pool: ApiPool, send: Any, on_result: OnResult, parse: ParseFn | None):
        self.pool, self.send, self.on_result, self.parse = pool, as_send(send), on_result, parse
        self.defaults = dict(getattr(send, "defaults", None) or {})  # a backend's default opts
        self.summary = RunSummary(priced=pool.price is not None)
        self.budget = BudgetTracker(pool.max_calls, pool.max_cost)
        self.stop = asyncio.Event()
        self.stop_reason: str | None = None
        self.callback_error: BaseException | None = None
        self.rng = random.Random(pool.seed)
        self.adaptive = AdaptiveConcurrency(pool.max_concurrency) if pool.adaptive else None
        self.timeouts = pool.timeouts or AttemptTimeouts("fixed" if pool.attempt_timeout else "off",
                                                         fixed=pool.attempt_timeout)

    def halt(self, why: str) -> None:
        """Stop dispatching. ``why``: "budget", "stopped" (by the caller) or "error" (on_result
        raised); results not run because of it say "budget" or "stopped"."""
        if self.stop_reason is None:
            self.stop_reason = "budget" if why == "budget" else "stopped"
            self.summary.stopped_by = why
        self.stop.set()

    async def deliver(self, result: ApiResult) -> None:
        self.summary.add(result)
        try:
            out = self.on_result(result)
            if inspect.isawaitable(out):
                await out
        except Exception as exc:  # the caller's cache failed: stop spending money
            log.error("on_result failed for %s: %s", result.key, exc)
            if self.callback_error is None:
                self.callback_error = exc
            self.halt("error")

    async def one(self, req: ApiRequest) -> None:
        res, t0 = ApiResult(req.key, "failed"), time.monotonic()
        try:
            await self.attempts(req, res)
        except Exception as exc:  # a bug here must not lose the request
            log.exception("api pool: internal error on %s", req.key)
            res.status, res.reason, res.error = "failed", "error", f"internal: {exc!r}"
        res.elapsed_s = time.monotonic() - t0
        await self.deliver(res)

    async def attempts(self, req: ApiRequest, res: ApiResult) -> None:
        pool = self.pool
        est_in = estimate_input_tokens(req.messages)
        opts = {**self.defaults, **req.opts}
        est_out = int(opts.get("max_tokens") or opts.get("max_completion_tokens")
                      or pool.assumed_output_tokens)
        est_cost = pool.price.cost(est_in, est_out) if pool.price else 0.0
        parse_failures = timeouts = 0
        while True:
            if self.stop.is_set() or not await self.budget.reserve(est_cost):
                if not self.stop.is_set():
                    self.halt("budget")
                why = self.stop_reason
                res.status = "not_run" if res.attempts == 0 else "failed"
                res.error = res.error and f"{why} before retry; last error: {res.error}"
                res.reason = why
                break
            reply, cost, token = None, 0.0, None
            try:
                if pool.limiter is not None:
                    await pool.limiter.acquire(est_in + est_out)
                res.attempts += 1
                self.summary.calls += 1
                token, t0 = self.adaptive.sent() if self.adaptive else None, time.monotonic()
                reply = await asyncio.wait_for(self.send(req), self.timeouts.seconds(est_out, timeouts))
                self.timeouts.observe(time.monotonic() - t0, reply.output_tokens)
                err = None
            except Exception as exc:
                err = classify(exc)
                if err.kind == "timeout" and err.status is None:  # abandoned: it may run and be billed
                    timeouts, cost = timeouts + 1, est_cost
                    self.summary.abandoned += 1
            finally:
                if reply is not None:
                    cost = pool.price.cost(reply.input_tokens, reply.output_tokens) if pool.price else 0.0
                    res.input_tokens += reply.input_tokens
                    res.output_tokens += reply.output_tokens
                    res.cost += cost
                    if pool.limiter is not None:
                        pool.limiter.settle(est_in + est_out, reply.input_tokens + reply.output_tokens)
                self.budget.settle(est_cost, cost)
            if self.adaptive is not None and token is not None:
                if reply is not None:
                    self.adaptive.succeeded(token, reply.output_tokens)
                elif err is not None:
                    self.adaptive.congested(token, err.kind)
            if reply is not None:
                res.text, res.reply = reply.text, reply
                try:
                    res.value = self.parse(reply) if self.parse else reply.text
                    res.status, res.reason, res.error = "ok", None, None
                    break
                except Exception as exc:
                    parse_failures += 1
                    err = CallError("parse", f"{type(exc).__name__}: {exc}",
                                    retryable=parse_failures <= pool.retry.parse_retries)
            assert err is not None
            res.reason, res.error = err.kind, err.message or err.kind
            if err.kind == "rate_limited":
                self.summary.rate_limited += 1
            if err.kind in STOPS_RUN:
                if self.summary.fatal is None:
                    self.summary.fatal = err.kind
                    self.summary.fatal_status = err.status
                    self.summary.fatal_message = err.message
                self.halt(err.kind)
                break
            if not err.retryable or res.attempts >= pool.retry.max_attempts:
                break
            delay = pool.retry.delay(res.attempts, err.retry_after, self.rng)
            if err.retry_after is not None and pool.limiter and pool.retry.pause_endpoint_on_429:
                pool.limiter.defer(min(err.retry_after, pool.retry.max_retry_after))
            log.debug("retry %s after %s (attempt %d) in %.2fs", req.key, err.kind, res.attempts, delay)
            self.summary.retries += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), delay)


class ApiPool:
    """Concurrent, rate-limited, retrying, budgeted execution of API requests."""

    def __init__(self, *, max_concurrency: int = 16, limiter: RateLimiter | None = None,
                 retry: RetryPolicy | None = None, max_calls: int | None = None,
                 max_cost: float | None = None, price: Price | None = None,
                 attempt_timeout: float | None = None, assumed_output_tokens: int = 512,
                 seed: int | None = None, adaptive: bool = False, timeouts: AttemptTimeouts | None = None):
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if max_cost is not None and price is None:
            raise ValueError("max_cost needs a price (input/output per 1M tokens) to count against")
        self.max_concurrency, self.limiter = max_concurrency, limiter
        self.retry = retry or RetryPolicy()
        self.max_calls, self.max_cost, self.price = max_calls, max_cost, price
        self.attempt_timeout, self.assumed_output_tokens = attempt_timeout, assumed_output_tokens
        self.seed, self.adaptive, self.timeouts = seed, adaptive, timeouts
        self._runs: dict[_Run, asyncio.AbstractEventLoop] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_backend(cls, backend: Any, *, rpm: float | None = None, tpm: float | None = None,
                    **kwargs: Any) -> ApiPool:
        """A pool whose limiter is the shared one of ``backend.endpoint`` (base_url + model)."""
        limiter = None
        if rpm is not None or tpm is not None:
            limiter = REGISTRY.get(backend.endpoint, rpm, tpm)
        return cls(limiter=limiter, **kwargs)

    async def run(self, requests: Iterable[ApiRequest], send: Any, on_result: OnResult,
                  parse: ParseFn | None = None) -> RunSummary:
        """Run every request; return the summary once all results were delivered."""
        run, t0 = _Run(self, send, on_result, parse), time.monotonic()
        with self._lock:
            self._runs[run] = asyncio.get_running_loop()
        adaptive = run.adaptive
        slots = Slots(lambda: adaptive.limit if adaptive is not None else self.max_concurrency)
        tasks: set[asyncio.Task] = set()
        try:
            prepare = getattr(send, "prepare", None)  # a backend's one-time set-up, off the clock
            if prepare is not None:
                await prepare()
            for req in requests:
                if not run.stop.is_set():
                    await slots.acquire()
                    if not run.stop.is_set():
                        task = asyncio.create_task(run.one(req))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                        task.add_done_callback(lambda _: slots.release())
                        continue
                    slots.release()
                if run.callback_error is not None:
                    break
                await run.deliver(ApiResult(req.key, "not_run", reason=run.stop_reason))
            if adaptive is not None:
                adaptive.drained()
            if tasks:
                await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        finally:
            with self._lock:
                self._runs.pop(run, None)
            run.summary.elapsed_s = time.monotonic() - t0
            if adaptive is not None:
                run.summary.concurrency = adaptive.path
        if run.callback_error is not None:
            raise ResultCallbackError(run.summary) from run.callback_error
        log.info("api pool: %s", run.summary)
        return run.summary

    def stop(self) -> None:
        """Stop every run of this pool (thread-safe): calls in flight finish and are delivered,
        retries are abandoned ("failed: stopped"), requests not started are "not run: stopped"."""
        with self._lock:
            runs = list(self._runs.items())
        for run, loop in runs:
            loop.call_soon_threadsafe(run.halt, "stopped")

    def submit(self, requests: Iterable[ApiRequest], send: Any, on_result: OnResult,
               parse: ParseFn | None = None) -> concurrent.futures.Future[RunSummary]:
        """``run`` on a fresh event loop in a worker thread; returns at once with a Future."""
        future: concurrent.futures.Future[RunSummary] = concurrent.futures.Future()

        async def main() -> RunSummary:
            try:
                return await self.run(requests, send, on_result, parse)
            finally:
                aclose = getattr(send, "aclose", None)
                if aclose is not None:  # the backend's client for this loop dies with the loop
                    await aclose()

        def target() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(asyncio.run(main()))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=target, name="dslrun-api-pool", daemon=True).start()
        return future

    def run_sync(self, requests: Iterable[ApiRequest], send: Any, on_result: OnResult,
                 parse: ParseFn | None = None) -> RunSummary:
        return self.submit(requests, send, on_result, parse).result()

    def __repr__(self) -> str:
        return (f"ApiPool(max_concurrency={self.max_concurrency}, limiter={self.limiter!r}, "
                f"max_calls={self.max_calls}, max_cost={self.max_cost})")
