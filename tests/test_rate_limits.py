"""The rate limiter in virtual time: what the test server receives at each instant of a run.

Runs go through the real pool, ``openai`` client and test server; only the limiter's
clock is virtual (``testkit.fake_clock.SteppedClock``). The test lets the run settle at
an instant (every request either answered or asleep in the limiter), reads how many
requests the server has logged, and advances. The counts are exact and do not depend on
the machine's speed: a slow machine takes longer to settle, not more requests.
"""

from __future__ import annotations

import asyncio

import pytest

from dslrun.runtime.api import ApiPool, ApiRequest, OpenAIBackend, RateLimiter, TokenBucket
from testkit.fake_clock import SteppedClock
from testkit.openai_server import OpenAITestServer

pytest.importorskip("openai")

KEY_ENV = "DSLRUN_LIMIT_TEST_KEY"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-limit-test")


class VirtualRun:
    """A pool run of ``n`` requests at ``rpm`` and ``concurrency``, paced by a stepped clock."""

    def __init__(self, srv: OpenAITestServer, n: int, rpm: float, concurrency: int):
        self.srv, self.n, self.concurrency = srv, n, concurrency
        self.clock = SteppedClock()
        self.delivered: list = []
        limiter = RateLimiter(rpm=rpm, clock=self.clock, sleep=self.clock.sleep)
        pool = ApiPool(max_concurrency=concurrency, limiter=limiter)
        backend = OpenAIBackend("test-model", base_url=srv.base_url, api_key_env=KEY_ENV)
        reqs = [ApiRequest(f"r{i}", [{"role": "user", "content": f"request {i}"}]) for i in range(n)]
        self.future = pool.submit(reqs, backend, self._on_result)

    def _on_result(self, result) -> None:
        self.delivered.append(result)
        self.clock.notify()

    def settled(self) -> bool:
        """No call in flight: every request not yet answered is asleep in the limiter."""
        return self.clock.sleeping == min(self.concurrency, self.n - len(self.delivered))

    def sent_at(self, t: float) -> int:
        """Advance to ``t``, let the run settle, return how many requests the server has seen."""
        self.clock.advance(t)
        self.clock.wait_until(self.settled)
        return self.srv.total

    def finish(self):
        t = self.clock.t
        while len(self.delivered) < self.n:
            t += 1.0
            self.sent_at(t)
        return self.future.result(timeout=120)


def test_the_first_minute_respects_the_limit():
    # rpm 300 = one request per 0.2 s; 16 in flight at most
    with OpenAITestServer() as srv:
        run = VirtualRun(srv, n=310, rpm=300, concurrency=16)
        sent = [run.sent_at(k / 5) for k in range(300)]
        summary = run.finish()
    # one request at start (not 16), then one per 0.2 s: 5 in [0, 1 s), 25 in the first 5 s, 300 in
    # the first minute
    assert sent == [k + 1 for k in range(300)]
    assert sent[4] == 5 and sent[24] == 25 and sent[299] == 300  # by t = 0.8, 4.8 and 59.8 s
    assert summary.ok == 310 and srv.stats().sent_429 == 0


def test_a_stalled_event_loop_does_not_release_a_burst():
    # The loop held for 3 s (the first call's `import openai` did this): every waiter's
    # turn passes at once. A limiter that handed out future slots would now send all 15
    # waiting requests together; this one sends what 3 s refilled into a 1-request bucket.
    with OpenAITestServer() as srv:
        run = VirtualRun(srv, n=40, rpm=300, concurrency=16)
        assert run.sent_at(0.0) == 1
        assert run.sent_at(3.0) == 2
        assert [run.sent_at(3.0 + k / 5) for k in range(1, 6)] == [3, 4, 5, 6, 7]
        assert run.finish().ok == 40


class JumpClock:
    """Virtual time that a sleeper moves forward itself (one waiter at a time)."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


def test_token_bucket_waits_refills_charges_and_refunds():
    clock = JumpClock()
    b = TokenBucket(rate=10, capacity=2, clock=clock, sleep=clock.sleep)

    def waits(*ns: float) -> list[float]:
        return [asyncio.run(b.acquire(n)) for n in ns]

    assert waits(1, 1, 1, 1) == pytest.approx([0, 0, 0.1, 0.1])
    clock.t += 10  # a long idle spell refills only up to capacity
    assert b.tokens == pytest.approx(2)
    assert waits(5) == [0]  # larger than the bucket: goes when it is full, leaves it in debt
    assert waits(1) == pytest.approx([0.4])
    b.charge(1)
    assert waits(1) == pytest.approx([0.2])
    b.refund(100)
    assert b.tokens == 2


def test_waiters_are_served_in_call_order():
    clock = SteppedClock()
    b = TokenBucket(rate=1, capacity=1, initial=0, clock=clock, sleep=clock.sleep)
    order: list[int] = []

    async def main() -> None:
        async def one(i: int) -> None:
            await b.acquire(1)
            order.append(i)

        tasks = [asyncio.create_task(one(i)) for i in range(5)]
        for t in range(1, 6):
            while clock.sleeping < 5 - len(order):
                await asyncio.sleep(0)
            clock.advance(float(t))
            while len(order) < t:
                await asyncio.sleep(0)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert order == [0, 1, 2, 3, 4]
