"""The OpenAI-compatible test server, exercised with the real ``openai`` client."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from testkit.openai_replies import MALFORMED_TEXT, FaultPlan, prompt_hash
from testkit.openai_server import OpenAITestServer

openai = pytest.importorskip("openai")

MSG = [{"role": "user", "content": "Rate this answer, please."}]


def client(srv: OpenAITestServer, timeout: float = 5.0):
    return openai.AsyncOpenAI(base_url=srv.base_url, api_key="x", max_retries=0, timeout=timeout)


def chat(srv: OpenAITestServer, messages=MSG, timeout: float = 5.0, **kw):
    async def go():
        async with client(srv, timeout) as c:
            return await c.chat.completions.create(model="test-model", messages=messages, **kw)
    return asyncio.run(go())


def test_real_client_gets_deterministic_scored_replies():
    with OpenAITestServer() as srv:
        a, b = chat(srv), chat(srv)
        other = chat(srv, [{"role": "user", "content": "something else"}])
    text = a.choices[0].message.content
    assert text == b.choices[0].message.content
    assert 1.0 <= float(text.splitlines()[0]) <= 5.0
    assert other.choices[0].message.content != text or other.id != a.id
    assert a.usage.prompt_tokens > 0 and a.usage.completion_tokens > 0
    assert a.usage.total_tokens == a.usage.prompt_tokens + a.usage.completion_tokens
    assert a.choices[0].finish_reason == "stop" and a.choices[0].logprobs is None


def test_scripted_reply_and_max_tokens_truncation():
    with OpenAITestServer(reply=lambda req: f"echo {len(req['messages'])} one two three") as srv:
        full = chat(srv)
        cut = chat(srv, max_tokens=2)
    assert full.choices[0].message.content == "echo 1 one two three"
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 2


def test_logprobs_in_openai_shape():
    with OpenAITestServer() as srv:
        r = chat(srv, logprobs=True, top_logprobs=3)
        custom = OpenAITestServer(top_logprobs=lambda req, tok: {"5": -0.1, "4": -2.5})
        with custom:
            rc = chat(custom, logprobs=True, top_logprobs=5)
    content = r.choices[0].logprobs.content
    assert "".join(t.token for t in content) == r.choices[0].message.content
    first = content[0]
    assert len(first.top_logprobs) == 3 and first.token == first.top_logprobs[0].token
    lps = [t.logprob for t in first.top_logprobs]
    assert lps == sorted(lps, reverse=True) and all(lp <= 0 for lp in lps)
    assert sum(math.exp(lp) for lp in lps) <= 1.0 + 1e-9
    assert bytes(first.bytes).decode() == first.token
    assert {t.token: t.logprob for t in rc.choices[0].logprobs.content[0].top_logprobs} == {
        "5": -0.1, "4": -2.5}


@pytest.mark.parametrize("kind", ["429", "500", "hang", "drop", "malformed", "bad_json"])
def test_each_fault_kind_is_produced(kind):
    with OpenAITestServer(fault_fn=lambda req, n: kind, retry_after="7") as srv:
        try:  # only a hang needs the client's timeout; for the rest it is a bound, never reached
            r = chat(srv, timeout=0.5 if kind == "hang" else 120)
            error = None
        except Exception as exc:  # noqa: BLE001 - the kind of exception is the point
            error = exc
        if kind == "hang":  # the server notices the client leave: wait for it, not for a moment
            deadline = time.monotonic() + 120
            while srv.stats().in_flight and time.monotonic() < deadline:
                time.sleep(0.01)
        stats = srv.stats()
    assert stats.outcomes[kind] == 1 and stats.total == 1
    if kind == "429":
        assert isinstance(error, openai.RateLimitError)
        assert error.response.headers["retry-after"] == "7"
    elif kind == "500":
        assert isinstance(error, openai.InternalServerError)
    elif kind == "hang":
        assert isinstance(error, openai.APITimeoutError)  # the server would have held it for 600 s
        assert stats.in_flight == 0  # the server noticed the client leave
    elif kind == "drop":
        assert isinstance(error, openai.APIConnectionError)
        assert not isinstance(error, openai.APITimeoutError)
    elif kind == "malformed":
        assert error is None and r.choices[0].message.content == MALFORMED_TEXT
        with pytest.raises(ValueError):
            float(r.choices[0].message.content.split()[0])
    else:
        assert isinstance(error, ValueError | openai.APIResponseValidationError)


def test_fault_plan_is_seeded_and_independent_of_order():
    plan, same, other = FaultPlan(0.2, seed=7), FaultPlan(0.2, seed=7), FaultPlan(0.2, seed=8)
    keys = [(prompt_hash([{"content": str(i)}]), n) for i in range(500) for n in range(2)]
    a = [plan(*k) for k in keys]
    assert a == [same(*k) for k in reversed(keys)][::-1]
    assert a != [other(*k) for k in keys]
    rate = sum(x is not None for x in a) / len(a)
    assert 0.15 < rate < 0.25
    assert {x for x in a if x} == {"429", "500", "hang", "drop", "malformed"}
    with pytest.raises(ValueError, match="unknown fault"):
        FaultPlan(rates={"teapot": 0.1})


def test_counts_per_prompt_and_total_under_concurrency():
    prompts = [[{"role": "user", "content": f"p{i}"}] for i in range(16)]

    async def go(srv):
        async with client(srv) as c:
            await asyncio.gather(*(c.chat.completions.create(model="m", messages=p)
                                   for p in prompts * 5))

    with OpenAITestServer(latency=0.2) as srv:
        asyncio.run(go(srv))
        stats = srv.stats()
        assert srv.count(prompts[3]) == 5 and srv.count(prompt_hash(prompts[3])) == 5
        srv.reset()
        assert srv.total == 0
    assert stats.total == 80 and stats.outcomes["ok"] == 80
    assert set(stats.per_prompt.values()) == {5}
    # 80 calls overlapped, not one after another (counted by the server: no clock in the assertion)
    assert stats.max_in_flight >= 64 and stats.in_flight == 0


def test_server_enforces_rpm_with_429_and_retry_after():
    with OpenAITestServer(rpm=60, rpm_burst=2) as srv:
        async def go():
            async with client(srv) as c:
                return await asyncio.gather(
                    *(c.chat.completions.create(model="m", messages=MSG) for _ in range(5)),
                    return_exceptions=True)
        results = asyncio.run(go())
        stats = srv.stats()
    limited = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(limited) == 3 and stats.outcomes["rpm_429"] == 3 and stats.sent_429 == 3
    assert int(limited[0].response.headers["retry-after"]) >= 1
    assert len(stats.arrivals) == 2


def test_models_stats_and_api_key():
    with OpenAITestServer(models=["judge-a", "judge-b"], api_key="right") as srv:
        async def go():
            async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="right") as c:
                return [m.id for m in (await c.models.list()).data]
        assert asyncio.run(go()) == ["judge-a", "judge-b"]
        with pytest.raises(openai.AuthenticationError):
            chat(srv)  # api_key="x"
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/_stats") as resp:
            assert json.load(resp)["outcomes"] == {"401": 1}


def test_runs_as_a_module():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tests = Path(__file__).parent
    proc = subprocess.Popen([sys.executable, "-m", "testkit.openai_server", "--port", str(port)],
                            cwd=tests, stdout=subprocess.PIPE, text=True)
    try:
        assert "serving on" in proc.stdout.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models") as resp:
            assert json.load(resp)["data"][0]["id"] == "test-model"
    finally:
        proc.terminate()
        proc.wait(10)
