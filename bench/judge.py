"""Benchmark: LLM-judge calls through ApiPool vs a plain sequential loop.

Against the OpenAI-compatible test server (tests/testkit) with a fixed latency
per call, using the real ``openai`` client:

1. sequential: one ``await client.chat.completions.create`` at a time (the first
   ``--seq-sample`` requests are timed and the rate extrapolated to ``--n``);
2. ApiPool with ``--concurrency`` calls in flight;
3. rate-limited: the server enforces ``--rpm`` itself (a 1-second bucket) and the
   pool paces at the same ``--rpm``; the achieved request rate is measured from the
   server's arrival times, and the 429s it sent are counted.

The last line is ``judge_speedup=<x> rpm_error=<relative error>``.

    python bench/judge.py            # ~55 s: most of it is phase 3 (500 requests at 600 rpm)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import openai  # noqa: E402

from dslrun.runtime.api import ApiPool, ApiRequest, OpenAIBackend, RateLimiter, Reply  # noqa: E402
from testkit.openai_server import OpenAITestServer  # noqa: E402

KEY_ENV = "DSLRUN_BENCH_API_KEY"
TEMPLATE = ("Rate the response to the instruction on a scale of 1 to 5.\n\n"
            "Instruction: {instruction}\n\nResponse: {response}\n\nScore:")


def make_requests(n: int, tag: str) -> list[ApiRequest]:
    return [ApiRequest(f"{tag}-{i}", [
        {"role": "system", "content": "You are a careful grader of instruction data."},
        {"role": "user", "content": TEMPLATE.format(instruction=f"Task {i} ({tag})",
                                                    response=f"An answer to task {i}.")},
    ], {"temperature": 0.0, "max_tokens": 16}) for i in range(n)]


def parse_score(reply: Reply) -> float:
    return float(reply.text.split()[0])


async def sequential(srv: OpenAITestServer, reqs: list[ApiRequest]) -> float:
    async with openai.AsyncOpenAI(base_url=srv.base_url, api_key=os.environ[KEY_ENV],
                                  max_retries=0) as client:
        t0 = time.perf_counter()
        for req in reqs:
            r = await client.chat.completions.create(model="test-model", messages=req.messages,
                                                     **req.opts)
            parse_score(Reply(text=r.choices[0].message.content or ""))
        return time.perf_counter() - t0


def pooled(srv: OpenAITestServer, reqs: list[ApiRequest], pool: ApiPool):
    be = OpenAIBackend("test-model", base_url=srv.base_url, api_key_env=KEY_ENV, timeout=30)
    results: list = []
    t0 = time.perf_counter()
    summary = pool.run_sync(reqs, be, results.append, parse=parse_score)
    return time.perf_counter() - t0, summary


def main() -> None:
    ap = argparse.ArgumentParser(description="ApiPool throughput and rate-limit pacing")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--seq-sample", type=int, default=25)
    ap.add_argument("--rpm", type=float, default=600)
    args = ap.parse_args()
    os.environ.setdefault(KEY_ENV, "bench-not-a-secret")
    n = args.n
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; server "
          f"latency {args.latency * 1000:.0f} ms; client, server and pool share one process")

    with OpenAITestServer(latency=args.latency) as srv:
        asyncio.run(sequential(srv, make_requests(3, "warm")))
        seq_s = asyncio.run(sequential(srv, make_requests(args.seq_sample, "seq")))
        seq_rate = args.seq_sample / seq_s
        print(f"sequential: {args.seq_sample} requests in {seq_s:.2f}s -> {seq_rate:.2f} req/s "
              f"(timed on the first {args.seq_sample}, extrapolated: {n} would take "
              f"{n / seq_rate:.1f}s)")
        best = 0.0
        for c in args.concurrency:
            srv.reset()
            took, summary = pooled(srv, make_requests(n, f"pool{c}"), ApiPool(max_concurrency=c))
            rate = n / took
            best = max(best, rate)
            print(f"ApiPool concurrency={c}: {n} requests in {took:.2f}s -> {rate:.1f} req/s "
                  f"({summary.ok} ok, server max in flight {srv.stats().max_in_flight}); "
                  f"speedup {rate / seq_rate:.1f}x")
    speedup = best / seq_rate

    with OpenAITestServer(latency=args.latency, rpm=args.rpm) as srv:
        pool = ApiPool(max_concurrency=max(args.concurrency), limiter=RateLimiter(rpm=args.rpm))
        took, summary = pooled(srv, make_requests(n, "rpm"), pool)
        stats = srv.stats()
        arr = stats.arrivals
        rate_rpm = (len(arr) - 1) / (arr[-1] - arr[0]) * 60
        err = abs(rate_rpm - args.rpm) / args.rpm
        print(f"rate-limited (pool rpm={args.rpm:g}, server enforcing {args.rpm:g} rpm): {n} requests "
              f"in {took:.1f}s; achieved {rate_rpm:.1f} rpm at the server (error {err:.2%}); "
              f"server sent {stats.sent_429} x 429; {summary.ok} ok, {summary.retries} retries")
    print(f"judge_speedup={speedup:.1f} rpm_error={err:.4f}")


if __name__ == "__main__":
    main()
