"""The API pool against the real OpenAI-compatible test server and the real ``openai`` client."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import subprocess
import sys
import threading
import time

import pytest

from dslrun.runtime.api import (
    ApiPool,
    ApiRequest,
    Backend,
    CallError,
    MissingCredentialError,
    OpenAIBackend,
    Price,
    PriceTable,
    RateLimiter,
    Reply,
    ResultCallbackError,
    RetryPolicy,
    endpoint_key,
    limiter_for,
    parse_retry_after,
)
from dslrun.runtime.api.limits import REGISTRY
from testkit.openai_server import OpenAITestServer

pytest.importorskip("openai")

KEY_ENV, SECRET = "DSLRUN_TEST_API_KEY", "sk-test-7f3a9c1e5b2d4f60a8e1c3b5d7f9a2c4"
FAST = RetryPolicy(base_delay=0.02, max_delay=0.2)


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


@pytest.fixture
def serve():
    servers: list[OpenAITestServer] = []

    def start(**kw) -> OpenAITestServer:
        servers.append(OpenAITestServer(**kw).start())
        return servers[-1]

    yield start
    for srv in servers:
        srv.stop()


def backend(srv: OpenAITestServer, **kw) -> OpenAIBackend:
    return OpenAIBackend("test-model", base_url=srv.base_url, api_key_env=KEY_ENV,
                         timeout=kw.pop("timeout", 2.0), **kw)


def requests(n: int, tag: str = "s") -> list[ApiRequest]:
    return [ApiRequest(f"{tag}{i}", [{"role": "user", "content": f"{tag} sample {i}"}])
            for i in range(n)]


def score(reply: Reply) -> float:
    return float(reply.text.split()[0])


def run(pool: ApiPool, reqs, send, parse=score):
    results = []
    summary = asyncio.run(pool.run(reqs, send, results.append, parse=parse))
    return summary, results


# -- the pool against faults --------------------------------------------------------------
def test_every_request_is_accounted_for_under_20_percent_faults(serve):
    srv = serve(fault_rate=0.2, fault_kinds=("429", "500", "hang", "drop", "malformed", "bad_json"),
                seed=11, retry_after="0.1", latency=0.01)
    pool = ApiPool(max_concurrency=32, retry=RetryPolicy(base_delay=0.02, max_delay=0.2,
                                                         max_attempts=3, parse_retries=1), seed=1)
    summary, results = run(pool, requests(200), backend(srv, timeout=0.5))
    stats = srv.stats()
    assert summary.accounted and summary.total == 200 and len(results) == 200
    assert sorted(r.key for r in results) == sorted(f"s{i}" for i in range(200))
    assert summary.ok == sum(r.ok for r in results) and summary.ok > 180
    for r in results:
        assert r.status in ("ok", "failed") and r.attempts >= 1
        assert r.ok or (r.reason and r.error), r
    assert summary.calls == stats.total == sum(r.attempts for r in results)
    assert summary.retries == summary.calls - 200
    assert summary.rate_limited == stats.outcomes["429"]
    assert set(stats.outcomes) >= {"ok", "429", "500", "hang", "drop", "malformed", "bad_json"}
    failed_with_text = [r for r in results if r.reason == "parse"]
    assert all(r.text for r in failed_with_text)  # a paid, unparsable reply is kept


def test_retries_run_out_with_a_reason(serve):
    srv = serve(fault_fn=lambda req, n: "500")
    summary, results = run(ApiPool(retry=RetryPolicy(base_delay=0.01, max_attempts=3)),
                           requests(4), backend(srv))
    assert summary.failed == {"server_error": 4} and summary.ok == 0
    assert all(r.attempts == 3 and "500" in r.error for r in results)
    assert srv.total == 12


def test_final_errors_are_not_retried_and_the_key_never_leaks(serve, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    srv = serve(api_key="a-different-key", fault_rate=0.3, seed=2)  # echoes the key it got
    be = backend(srv)
    pool = ApiPool(retry=FAST)
    summary, results = run(pool, requests(5), be)
    assert summary.failed == {"auth": 5} and srv.stats().outcomes["401"] == 5
    good = serve(api_key=SECRET, fault_rate=0.3, fault_kinds=("429", "500", "drop", "hang"), seed=2,
                 retry_after="0.05")
    summary2, results2 = run(pool, requests(20), backend(good, top_logprobs=3, timeout=0.3))
    assert summary2.ok == 20 and good.stats().outcomes["401"] == 0  # the key was sent
    texts = [repr(results), repr(results2), str(summary), str(summary2), repr(be), repr(pool),
             caplog.text, *(repr(r.reply.raw) for r in results2),
             *(str(CallError(r.reason, r.error)) for r in results)]
    assert "Incorrect API key provided: ***" in results[0].error
    assert not [t for t in texts if SECRET in t]
    assert SECRET not in repr(vars(be))


def test_retry_after_seconds_is_honoured(serve):
    attempts: list[int] = []  # attempt numbers in the order the server saw them

    def fault(req, n):
        attempts.append(n)
        return "429" if n == 0 else None

    srv = serve(fault_fn=fault, retry_after="1")
    summary, results = run(ApiPool(retry=FAST), requests(3), backend(srv))
    assert summary.ok == 3 and summary.rate_limited == 3 and summary.retries == 3
    assert all(r.elapsed_s >= 1.0 for r in results), [r.elapsed_s for r in results]  # no retry came early
    assert attempts == [0, 0, 0, 1, 1, 1]  # the three waits overlap: no retry waited for another's


def test_retry_after_http_date_is_honoured(serve):
    srv = serve(fault_fn=lambda req, n: "429" if n == 0 else None,
                retry_after=lambda: email.utils.formatdate(time.time() + 2, usegmt=True))
    summary, results = run(ApiPool(retry=FAST), requests(1), backend(srv))
    assert summary.ok == 1 and results[0].elapsed_s >= 0.95  # an upper bound would be a timing test


def test_parse_retry_after_forms():
    now = time.time()
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after({"Retry-After": date}, now=now) <= 30
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


# -- budget --------------------------------------------------------------------------------
def test_max_calls_stops_cleanly_and_reports_the_rest(serve):
    srv = serve(latency=0.02)
    pool = ApiPool(max_concurrency=4, max_calls=10, retry=FAST)
    summary, results = run(pool, requests(30), backend(srv))
    assert srv.total == 10 and summary.calls == 10 and summary.ok == 10
    assert summary.not_run == {"budget": 20} and summary.stopped_by == "budget"
    assert len(results) == 30 and summary.accounted
    assert {r.describe() for r in results if not r.ok} == {"not run: budget"}


def test_max_cost_is_never_exceeded(serve):
    srv = serve()
    price = Price(input_per_1m=1000.0, output_per_1m=2000.0)
    opts = {"max_tokens": 30}
    reqs = [ApiRequest(f"c{i}", [{"role": "user", "content": f"cost sample {i}"}], opts)
            for i in range(40)]
    pool = ApiPool(max_concurrency=8, max_cost=0.5, price=price, retry=FAST)
    summary, results = run(pool, reqs, backend(srv))
    assert summary.cost <= 0.5 and summary.ok == srv.total > 5
    assert summary.not_run["budget"] == 40 - summary.ok and summary.accounted
    assert summary.cost == pytest.approx(sum(r.cost for r in results))
    assert results[0].cost == pytest.approx(price.cost(results[0].input_tokens,
                                                       results[0].output_tokens))
    with pytest.raises(ValueError, match="price"):
        ApiPool(max_cost=1.0)
    assert PriceTable({"gpt-4o": Price(1, 2), "gpt-4o-mini": Price(3, 4)}).lookup(
        "gpt-4o-mini-2024-07-18") == Price(3, 4)


# -- concurrency, delivery, control ----------------------------------------------------------
def test_concurrency_bound_is_respected(serve):
    srv = serve(latency=0.05)
    summary, _ = run(ApiPool(max_concurrency=8), requests(64), backend(srv))
    assert summary.ok == 64 and srv.stats().max_in_flight == 8


def test_results_are_delivered_as_they_finish():
    delays = {"fast": 0.01, "slow": 1.0}
    seen: dict[str, float] = {}
    t0 = time.monotonic()

    async def send(req: ApiRequest) -> Reply:
        await asyncio.sleep(delays[req.key])
        return Reply(text="5")

    def on_result(r):
        seen[r.key] = time.monotonic() - t0

    reqs = [ApiRequest(k, [{"role": "user", "content": k}]) for k in ("slow", "fast")]
    asyncio.run(ApiPool().run(reqs, send, on_result))
    assert seen["fast"] < 0.5 <= seen["slow"]


def test_failing_on_result_stops_the_run(serve):
    srv = serve(latency=0.02)

    def on_result(r):
        raise OSError("disk full")

    with pytest.raises(ResultCallbackError) as info:
        asyncio.run(ApiPool(max_concurrency=2).run(requests(50), backend(srv), on_result))
    assert isinstance(info.value.__cause__, OSError) and srv.total < 10
    assert info.value.summary.stopped_by == "error"


def test_submit_overlaps_with_other_work_and_stop_is_clean(serve):
    srv = serve(latency=0.05)
    pool = ApiPool(max_concurrency=4)
    results, threads, some = [], set(), threading.Event()

    def on_result(r):
        results.append(r)
        threads.add(threading.current_thread().name)
        if len(results) == 10:
            some.set()

    future = pool.submit(requests(400), backend(srv), on_result, parse=score)
    assert not future.done()  # returned at once; this thread is free
    assert some.wait(60)  # stop once some results are in (an event, not a sleep)
    pool.stop()
    summary = future.result(10)
    assert summary.stopped_by == "stopped" and summary.accounted and len(results) == 400
    assert 0 < summary.ok < 400 and summary.not_run["stopped"] == 400 - summary.ok
    assert summary.ok == srv.total and threads == {"dslrun-api-pool"}
    assert pool.run_sync(requests(3, "again"), backend(srv), lambda r: None).ok == 3


def test_backend_reply_protocol_and_credentials(serve, monkeypatch):
    srv = serve()
    be = backend(srv, logprobs=True, top_logprobs=4, temperature=0.0, seed=1)
    assert isinstance(be, Backend)
    reply = asyncio.run(be.chat([{"role": "user", "content": "hi"}]))
    assert float(reply.text.split()[0]) and len(reply.top_logprobs) == 4
    assert max(reply.top_logprobs, key=reply.top_logprobs.get) == reply.text[0]
    assert reply.input_tokens > 0 and reply.raw["usage"]["completion_tokens"] == reply.output_tokens
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(MissingCredentialError, match=KEY_ENV):
        backend(srv)


def test_importing_the_package_imports_neither_openai_nor_torch():
    code = ("import sys, dslrun.runtime.api; "
            "print(sorted(m for m in ('openai', 'torch', 'httpx2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- rate limits ------------------------------------------------------------------------------
# The limiter's pacing, its first minute and its bursts: tests/test_rate_limits.py (virtual time).
class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_rate_limiter_tpm_settle_defer_and_registry():
    clock = FakeClock()
    lim = RateLimiter(rpm=60, tpm=600, clock=clock)
    assert lim.requests.capacity == 1 and lim.tokens.capacity == 10
    assert asyncio.run(lim.acquire(10)) == 0
    lim.settle(10, 4)
    assert lim.tokens.tokens == pytest.approx(6)
    lim.defer(0.05)
    clock.t = 0.0

    async def waits():
        return await RateLimiter(clock=time.monotonic).acquire()
    assert asyncio.run(waits()) == 0
    REGISTRY.clear()
    a = limiter_for("HTTP://Host:1/v1/", "m", rpm=600)
    b = limiter_for("http://host:1/v1", "m", rpm=300, tpm=1000)
    assert a is b and a.rpm == 300 and a.tpm == 1000
    assert limiter_for("http://host:1/v1", "other") is not a
    assert endpoint_key(None, "gpt-4o") == "https://api.openai.com/v1 gpt-4o"
    pool = ApiPool.for_backend(OpenAIBackend("m", base_url="http://host:1/v1", api_key_env=KEY_ENV),
                               rpm=900)
    assert pool.limiter is a and a.rpm == 300
    REGISTRY.clear()


def test_backoff_grows_is_capped_and_jittered():
    policy, rng = RetryPolicy(base_delay=1, max_delay=8, jitter=0.5), random.Random(0)
    for n, cap in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)]:
        d = policy.delay(n, None, rng)
        assert cap / 2 <= d <= cap
    assert 3 <= policy.delay(1, 3.0, rng) <= 3.3
    assert policy.delay(1, 1e6, rng) <= policy.max_retry_after * 1.1
