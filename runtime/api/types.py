"""The data the API pool takes and gives: requests, replies, errors, results, a summary.

Plain dataclasses with no third-party imports, so the executor, the cache and
the backends can all share them cheaply.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Error kinds a backend reports. The first group is worth retrying.
RETRYABLE = frozenset({"rate_limited", "server_error", "timeout", "connection", "bad_response"})
FINAL = frozenset({"bad_request", "auth", "not_found", "quota", "error"})
# Final errors that every later call to the endpoint would repeat: the run stops at the first.
STOPS_RUN = frozenset({"auth", "not_found", "quota"})


@dataclass(frozen=True)
class Reply:
    """One chat reply. ``top_logprobs`` is for the first generated position, ``{token: logprob}``."""

    text: str
    top_logprobs: dict[str, float] | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    model: str | None = None
    raw: dict[str, Any] | None = field(default=None, repr=False, compare=False)


class CallError(Exception):
    """A failed call, classified. Backends raise this; anything else is classified by the pool.

    ``kind`` is one of RETRYABLE | FINAL | {"parse", "budget", "stopped"};
    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one.
    The message must never contain a credential (backends redact it).
    """

    def __init__(self, kind: str, message: str = "", *, retryable: bool | None = None,
                 retry_after: float | None = None, status: int | None = None):
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind, self.message, self.status = kind, message, status
        self.retryable = kind in RETRYABLE if retryable is None else retryable
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"CallError({self.kind!r}, {self.message!r}, retryable={self.retryable})"


def raw_text(messages: list[dict[str, Any]]) -> str:
    """The plain text a raw (completion-style) prompt sends: the messages' contents joined by a
    blank line, with no chat template. The local backend and ``/v1/completions`` send the same
    text, so both score the same tokens."""
    return "\n\n".join(str(m.get("content", "")) for m in messages)


@dataclass(frozen=True)
class ApiRequest:
    """One call to make. ``key`` is the caller's id (sample id or cache key), echoed in the result;
    ``opts`` are per-call options passed to the backend (temperature, max_tokens, seed, ...)."""

    key: str
    messages: list[dict[str, Any]]
    opts: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ApiResult:
    """What became of one request; delivered through ``on_result`` as soon as it is known.

    ``status``: "ok" (``value`` holds the parsed reply), "failed" (``reason`` is the
    error kind of the last attempt, ``error`` its detail) or "not_run" (``reason`` is
    "budget" or "stopped": no call was made for it). ``text``/``reply`` keep the last
    reply received even when it failed to parse, so a paid reply is never lost.
    """

    key: str
    status: str
    value: Any = None
    reason: str | None = None
    error: str | None = None
    text: str | None = None
    reply: Reply | None = field(default=None, repr=False)
    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describe(self) -> str:
        if self.status == "ok":
            return "ok"
        what = "not run" if self.status == "not_run" else "failed"
        return f"{what}: {self.reason}" + (f" ({self.error})" if self.error else "")


@dataclass
class RunSummary:
    """Counts of a run. ``ok + failed + not_run == total`` always holds when it returns.

    ``fatal`` is the kind of the error that stopped the run (one of ``STOPS_RUN``), with the
    HTTP status and the (redacted) message of the first such error.
    """

    total: int = 0
    ok: int = 0
    failed: Counter = field(default_factory=Counter)
    not_run: Counter = field(default_factory=Counter)
    calls: int = 0
    retries: int = 0
    rate_limited: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    elapsed_s: float = 0.0
    stopped_by: str | None = None
    fatal: str | None = None
    fatal_status: int | None = None
    fatal_message: str | None = None
    abandoned: int = 0  # attempts given up at their timeout (charged to the budget at their worst case)
    concurrency: list[int] = field(default_factory=list)  # the adaptive limit's path, when it adapts
    priced: bool = True  # False: no price, so no cost to show

    @property
    def accounted(self) -> bool:
        return self.ok + sum(self.failed.values()) + sum(self.not_run.values()) == self.total

    def add(self, result: ApiResult) -> None:
        self.total += 1
        if result.status == "ok":
            self.ok += 1
        elif result.status == "not_run":
            self.not_run[result.reason or "?"] += 1
        else:
            self.failed[result.reason or "?"] += 1
        self.input_tokens += result.input_tokens
        self.output_tokens += result.output_tokens
        self.cost += result.cost

    def __str__(self) -> str:
        parts = [f"{self.total} requests: {self.ok} ok"]
        if self.failed:
            parts.append("failed " + ", ".join(f"{k}={v}" for k, v in sorted(self.failed.items())))
        if self.not_run:
            parts.append("not run " + ", ".join(f"{k}={v}" for k, v in sorted(self.not_run.items())))
        parts.append(f"{self.calls} calls, {self.retries} retries, {self.rate_limited} rate-limited"
                     + (f", {self.abandoned} timed out" if self.abandoned else ""))
        if self.concurrency:
            path = self.concurrency if len(self.concurrency) <= 8 else [*self.concurrency[:3], "…",
                                                                         *self.concurrency[-3:]]
            parts.append("concurrency " + "→".join(map(str, path)))
        parts.append(f"{self.input_tokens}+{self.output_tokens} tokens" + (f", cost {self.cost:.4f}" if self.priced else ""))
        return "; ".join(parts) + f" in {self.elapsed_s:.1f}s"


@dataclass(frozen=True)
class Price:
    """Price in money units per 1M input and output tokens."""

    input_per_1m: float
    output_per_1m: float

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input_per_1m + output_tokens * self.output_per_1m) / 1e6


class PriceTable(dict[str, Price]):
    """model name -> Price. ``lookup`` takes the longest key that prefixes the model name,
    so "gpt-4o-mini" prices "gpt-4o-mini-2024-07-18"."""

    def lookup(self, model: str) -> Price | None:
        if model in self:
            return self[model]
        keys = [k for k in self if model.startswith(k)]
        return self[max(keys, key=len)] if keys else None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; ``Retry-After`` wins when the server sends one.

    The n-th retry waits ``min(max_delay, base_delay * 2**(n-1))`` scaled by a random
    factor in ``[1 - jitter, 1]``, or ``Retry-After`` (capped at ``max_retry_after``)
    plus up to 10% jitter. ``parse_retries`` extra calls are made when a reply does not
    parse (0 by default: at temperature 0 the same prompt gives the same reply).
    """

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.5
    max_retry_after: float = 120.0
    parse_retries: int = 0
    pause_endpoint_on_429: bool = True

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            wait = min(max(retry_after, 0.0), self.max_retry_after)
            return wait + rng.uniform(0, 0.1) * wait
        wait = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return wait * (1 - self.jitter * rng.random())
