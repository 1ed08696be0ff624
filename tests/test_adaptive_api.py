"""Judges that adapt to the server (issue 18 item 2): the concurrency limit (fake clock), attempt
timeouts, what a timed-out attempt costs, and the defaults of loopback vs paid endpoints."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest

from dslrun.runtime.api import (
    ApiPool,
    ApiRequest,
    OpenAIBackend,
    Price,
    RetryPolicy,
    estimate_input_tokens,
)
from dslrun.runtime.api.adaptive import AdaptiveConcurrency
from dslrun.runtime.api.endpoints import PRICES, price_for
from dslrun.runtime.api.timeouts import AttemptTimeouts, is_loopback
from testkit.fake_clock import SteppedClock
from testkit.openai_server import OpenAITestServer

pytest.importorskip("openai")
KEY_ENV = "DSLRUN_ADAPTIVE_TEST_KEY"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "x")


def drive(limiter: AdaptiveConcurrency, clock: SteppedClock, per_token, windows: int, tokens: int = 100) -> list[int]:
    """Run ``windows`` windows of a server whose seconds per token at ``n`` in flight is ``per_token(n)``:
    each window sends ``limit`` calls at once and they all land after ``tokens × per_token(limit)``."""
    seen = []
    for _ in range(windows):
        n = limiter.limit
        sent = [limiter.sent() for _ in range(n)]
        clock.advance(clock() + tokens * per_token(n))
        for token in sent:
            limiter.succeeded(token, tokens)
        seen.append(limiter.limit)
    return seen


def test_the_limit_grows_while_a_batching_server_gains_throughput():
    clock = SteppedClock()
    limiter = AdaptiveConcurrency(ceiling=64, clock=clock)
    # a batching server: each decode step costs 20 ms plus 1 ms per sequence (throughput keeps rising)
    seen = drive(limiter, clock, lambda n: 0.020 + 0.001 * n, windows=6)
    assert limiter.initial == 8 and seen == [16, 32, 64, 64, 64, 64]  # slow start to the ceiling


def test_growth_stops_where_the_server_only_queues():
    clock = SteppedClock()
    limiter = AdaptiveConcurrency(ceiling=64, clock=clock)
    # batches of at most 16: beyond that, calls wait their turn and per-token latency grows with n
    seen = drive(limiter, clock, lambda n: 0.036 * max(1.0, n / 16), windows=8)
    # 32 gained nothing over 16: back to 16, then probing by one (flat throughput) up from there
    assert seen == [16, 32, 16, 17, 18, 19, 20, 21] and not limiter.slow_start


def test_congestion_halves_the_limit_once_per_window():
    clock = SteppedClock()
    limiter = AdaptiveConcurrency(ceiling=64, start=32, clock=clock)
    old = [limiter.sent() for _ in range(32)]
    for token in old[:10]:  # ten 429s from calls sent at 32: one cut
        limiter.congested(token, "rate_limited")
    assert limiter.limit == 16
    limiter.congested(old[10], "timeout")
    assert limiter.limit == 16
    limiter.congested(limiter.sent(), "server_error")  # a call sent after the cut: a second signal
    assert limiter.limit == 8
    limiter.congested(limiter.sent(), "parse")  # not a sign of overload
    assert limiter.limit == 8 and [why for why, _ in limiter.history] == ["rate_limited", "server_error"]


def test_no_growth_once_the_requests_run_out():
    clock = SteppedClock()
    limiter = AdaptiveConcurrency(ceiling=64, clock=clock)
    limiter.drained()
    assert drive(limiter, clock, lambda n: 0.01, windows=3) == [8, 8, 8]


def test_the_pool_backs_off_on_429_from_the_server():
    """The server refuses every prompt's first request: the pool, starting at 8 in flight, halves its
    limit at the first 429 and never exceeds its start; every request ends ok."""
    with OpenAITestServer(fault_fn=lambda req, n: "429" if n == 0 else None, retry_after="0") as srv:
        backend = OpenAIBackend("test-model", base_url=srv.base_url, api_key_env=KEY_ENV)
        pool = ApiPool(max_concurrency=64, adaptive=True, retry=RetryPolicy(base_delay=0.01, max_delay=0.02))
        reqs = [ApiRequest(f"s{i}", [{"role": "user", "content": f"q{i}"}]) for i in range(40)]
        summary = asyncio.run(pool.run(reqs, backend, lambda r: None))
        stats = srv.stats()
    assert summary.ok == 40 and summary.rate_limited == 40 and stats.total == 80
    assert summary.concurrency[:2] == [8, 4] and stats.max_in_flight <= 8
    assert "concurrency 8→4" in str(summary)


def test_attempt_timeouts_follow_the_observed_token_rate():
    t = AttemptTimeouts("derived", floor=30.0, margin=3.0, initial=120.0, min_samples=5)
    assert t.seconds(512) == 120.0  # nothing seen yet
    for _ in range(19):
        t.observe(10.0, 100)  # 0.1 s per token
    t.observe(40.0, 100)  # one slow reply: the 95th percentile
    assert t.seconds(512) == pytest.approx(3 * 0.4 * 512)
    assert t.seconds(512, timeouts_so_far=2) == pytest.approx(4 * 3 * 0.4 * 512)  # each timeout doubles it
    assert t.seconds(2) == 30.0  # the floor
    assert AttemptTimeouts.for_endpoint("http://127.0.0.1:8000/v1", None).seconds(512) is None
    assert AttemptTimeouts.for_endpoint("http://localhost:8000/v1", None).mode == "off"
    assert AttemptTimeouts.for_endpoint("https://api.openai.com/v1", None).mode == "derived"
    assert AttemptTimeouts.for_endpoint("http://127.0.0.1:8000/v1", 5.0).seconds(512) == 5.0
    assert [is_loopback(u) for u in ("http://[::1]:80/v1", "http://127.1.2.3/", "http://gpu-box:8000/v1")] == [
        True, True, False]


def test_a_timed_out_attempt_stays_charged_to_the_budget():
    """The first attempt hangs past its timeout: it may still run, and be billed, at the provider, so
    its worst case stays spent; the retry no longer fits under max_cost and is not sent."""
    price = Price(1e6, 1e6)  # a unit of money per token: a call's worst case is its token estimate
    msgs = [{"role": "user", "content": "rate this"}]
    with OpenAITestServer(fault_fn=lambda req, n: "hang" if n == 0 else None, hang_s=30) as srv:
        backend = OpenAIBackend("test-model", base_url=srv.base_url, api_key_env=KEY_ENV)
        got = []
        worst = estimate_input_tokens(msgs) + 16
        pool = ApiPool(max_concurrency=1, price=price, max_cost=1.5 * worst, timeouts=AttemptTimeouts(
            "fixed", fixed=0.3), retry=RetryPolicy(base_delay=0.01, max_delay=0.02))
        summary = asyncio.run(pool.run([ApiRequest("a", msgs, {"max_tokens": 16})], backend, got.append))
        assert srv.total == 1  # never sent twice
    assert summary.abandoned == 1 and summary.calls == 1
    assert got[0].status == "failed" and got[0].reason == "budget" and "timeout" in got[0].error


def test_loopback_defaults_no_rate_limit_no_price_no_timeout(monkeypatch):
    from dslrun.operators.llm.base import LlmParams
    from dslrun.runtime.api.connect import backend_for, pool_for

    monkeypatch.setenv(KEY_ENV, "x")
    local = LlmParams(base_url="http://127.0.0.1:8000/v1", api_key_env=KEY_ENV)
    b = backend_for(local, "smollm2", None, KEY_ENV)
    pool = pool_for(local, b)
    assert pool.limiter is None and pool.price is None and pool.timeouts.mode == "off" and b.timeout is None
    assert pool.adaptive and pool.max_concurrency == 64
    paid = LlmParams(api_key_env=KEY_ENV)  # OpenAI's own endpoint
    pool = pool_for(paid, backend_for(paid, "gpt-4o-mini", None, KEY_ENV))
    assert pool.limiter.rpm == 500 and pool.price == PRICES["gpt-4o-mini"] and pool.timeouts.mode == "derived"
    assert price_for("http://127.0.0.1:8000/v1", "gpt-4o-mini", None) is None
    assert price_for("https://openrouter.ai/api/v1", "openai/gpt-4o-mini", None) == PRICES["gpt-4o-mini"]
    assert price_for("http://127.0.0.1:8000/v1", "x", {"input": 1.0, "output": 2.0}) == Price(1.0, 2.0)


def test_a_loopback_pool_waits_for_a_slow_reply_instead_of_resending(monkeypatch):
    """No attempt timeout on a loopback server: a reply held back by the server is waited for, and the
    request is sent once (a gate releases it after the pool's call has arrived; no clock involved)."""
    from dslrun.operators.llm.base import LlmParams
    from dslrun.runtime.api.connect import backend_for, pool_for

    monkeypatch.setenv(KEY_ENV, "x")
    gate = threading.Event()
    with OpenAITestServer(gate=gate) as srv:
        p = LlmParams(base_url=srv.base_url, api_key_env=KEY_ENV)
        backend = backend_for(p, "test-model", None, KEY_ENV)
        future = pool_for(p, backend).submit([ApiRequest("a", [{"role": "user", "content": "hi"}])], backend,
                                             lambda r: None)
        while srv.total < 1:
            threading.Event().wait(0.01)
        gate.set()
        summary = future.result()
        assert srv.total == 1
    assert summary.ok == 1 and summary.calls == 1 and summary.abandoned == 0
    assert "cost" not in str(summary)  # no price: no cost to show


def test_the_plan_of_a_step_at_openai_prices_it_from_the_table():
    from dslrun.operators.judge_score import JudgeScore

    op = JudgeScore(JudgeScore.params_type(template="alpagasus"))
    cost = op.estimate_rows(SimpleNamespace(column=lambda c: ["x" * 30]), [0])
    assert cost.money == pytest.approx(PRICES["gpt-4o-mini"].cost(cost.input_tokens, cost.output_tokens))
