"""``judge-score``: whole runs against the test server (prompts and parsers: test_judge_prompts.py)."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dslrun.core.errors import ErrorList
from dslrun.dsl.compile import compile_spec
from dslrun.dsl.load import load_spec
from dslrun.operators.llm.prompts import (
    JUDGES,
)
from dslrun.runtime.data.pool_files import read_pool
from dslrun.runtime.run import check_credentials
from testkit.cli import REPO, dslrun, dslrun_here, write_pool
from testkit.openai_server import OpenAITestServer

pytest.importorskip("openai")

KEY_ENV, SECRET = "DSLRUN_JUDGE_TEST_KEY", "sk-judge-test-5b1e0c7d9a3f42e8b6d1"


# ----------------------------------------------------------------------------- whole runs

SPEC = """\
param base_url = "http://127.0.0.1:1/v1"
param threshold = 4.5
param concurrency = 8
pool = load(path: "pool.json")
rated = judge-score(pool, template: alpagasus, model: test-model, base_url: $base_url,
                    api_key_env: {key}, timeout: 1.5, max_attempts: 8, concurrency: $concurrency)
kept = filter(rated, where: score >= $threshold)
save(kept)
"""


def project(tmp_path: Path, n: int) -> Path:
    records = [{"instruction": f"Explain idea number {i}.", "input": "" if i % 2 else f"ctx {i}",
                "output": f"Idea {i} is explained here."} for i in range(n)]
    write_pool(tmp_path / "pool.json", records)
    (tmp_path / "spec.sel").write_text(SPEC.replace("{key}", KEY_ENV))
    return tmp_path


def run(tmp_path: Path, srv: OpenAITestServer, *extra: str, check: bool = True, here: bool = True):
    """A run in this process (dslrun_here), or with ``here=False`` in a process of its own."""
    return (dslrun_here if here else dslrun)("run", "spec.sel", "--set", f"base_url={srv.base_url}", "-q", *extra, cwd=tmp_path,
                  env={KEY_ENV: SECRET}, check=check)


def scores(tmp_path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(tmp_path / "out" / "spec" / "selected.scores.parquet").to_pylist()


def test_faults_of_every_kind_end_scored_or_failed_with_a_reason(tmp_path):
    project(tmp_path, 40)
    with OpenAITestServer(fault_rate=0.2, seed=3, retry_after="0.05", hang_s=30) as srv:
        proc = run(tmp_path, srv, "--set", "threshold=-100")  # keep every row to inspect it
        assert srv.stats().outcomes.keys() - {"ok"}, "the server should have injected faults"
    rows = scores(tmp_path)
    assert len(rows) == 40
    ok = [r for r in rows if r["score_reason"] is None]
    unparsable = [r for r in rows if (r["score_reason"] or "").startswith("unparsable")]
    failed = [r for r in rows if r["score_reason"] and r not in unparsable]
    assert len(ok) + len(unparsable) + len(failed) == 40
    assert all(1.0 <= r["score"] <= 5.0 for r in ok)
    assert all(r["score"] == -1.0 for r in unparsable)  # AlpaGasus' value for an unparsable reply
    assert all(r["score"] is None for r in failed)
    assert "api: 40 requests" in proc.stdout


def test_rerun_with_another_threshold_sends_no_request(tmp_path):
    project(tmp_path, 25)
    with OpenAITestServer(seed=1) as srv:
        run(tmp_path, srv)
        first = srv.total
        kept_45 = len(scores(tmp_path))
        proc = run(tmp_path, srv, "--set", "threshold=4.0")
        assert srv.total == first == 25
        assert len(scores(tmp_path)) >= kept_45
        assert "25" in proc.stdout  # cache hits reported


def cached_samples(cache: Path) -> set[str]:
    db = sqlite3.connect(cache / "scores.sqlite")
    try:
        return {s for (s,) in db.execute(
            "SELECT s.sample FROM scores s JOIN nodes n ON s.node = n.node WHERE n.op = 'judge-score'")}
    finally:
        db.close()


def answer_first(k: int):
    """A fault plan: the server answers the first ``k`` requests and holds every later one
    (no reply until the client goes away), so exactly ``k`` samples can be paid for."""
    lock, seen = threading.Lock(), [0]

    def fault(request: dict, n: int) -> str | None:
        with lock:
            seen[0] += 1
            return None if seen[0] <= k else "hang"
    return fault


def wait_for_cached(cache: Path, k: int) -> set[str]:
    """The judge's cached samples once there are ``k`` (the deadline only guards against a hang)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            got = cached_samples(cache) if (cache / "scores.sqlite").exists() else set()
        except sqlite3.OperationalError:  # the run has not made its tables yet
            got = set()
        if len(got) >= k:
            return got
        assert time.monotonic() < deadline, f"only {len(got)} of {k} replies were cached"
        time.sleep(0.05)


def test_sigkill_mid_run_then_resume_pays_for_no_answered_sample(tmp_path):
    # Deterministic: the server answers exactly 10 requests and holds the rest, the test kills
    # the run once those 10 are cached (a count, not a moment), then resumes with an open server.
    project(tmp_path, 30)
    spec = tmp_path / "spec.sel"
    spec.write_text(spec.read_text().replace("timeout: 1.5", "timeout: 60"))  # no retries by timing
    pool = read_pool(tmp_path / "pool.json").table
    msgs = {sid: JUDGES["alpagasus"].messages({c: pool.column(c)[i] for c in ("instruction", "input", "output")})
            for i, sid in enumerate(pool.ids)}
    with OpenAITestServer(fault_fn=answer_first(10), hang_s=600) as srv:
        cmd = [sys.executable, "-m", "dslrun.runtime.cli", "run", "spec.sel", "-q", "--set",
               f"base_url={srv.base_url}", "--set", "concurrency=2"]
        proc = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, KEY_ENV: SECRET},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            answered = wait_for_cached(tmp_path / ".dslrun", 10)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert answered == cached_samples(tmp_path / ".dslrun") and len(answered) == 10
        before = {sid: srv.count(m) for sid, m in msgs.items()}
        assert all(before[sid] == 1 for sid in answered)
        srv.fault_fn = None  # the resumed run gets every answer
        run(tmp_path, srv, "--set", "threshold=-100")
        after = {sid: srv.count(m) for sid, m in msgs.items()}
    assert all(after[sid] == before[sid] == 1 for sid in answered)
    assert all(after[sid] == before[sid] + 1 for sid in msgs if sid not in answered)
    assert len(scores(tmp_path)) == 30


def test_the_api_key_never_reaches_cache_logs_lock_or_outputs(tmp_path):
    project(tmp_path, 12)
    # Auth failures echo what the server saw; the key must still not be written anywhere.
    with OpenAITestServer(seed=4, fault_rate=0.3, retry_after="0.05", hang_s=30) as srv:
        proc = run(tmp_path, srv, "--set", "threshold=-100", here=False)  # all the process writes is scanned
    text = proc.stdout + proc.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            text += path.read_bytes().decode("utf-8", errors="replace")
    assert "sk-judge-test" not in text and SECRET not in text
    assert "api: 12 requests" in proc.stdout  # the scan did cover a run that talked to the server


def test_a_literal_key_in_a_spec_is_an_error(tmp_path):
    project(tmp_path, 2)
    spec = (tmp_path / "spec.sel").read_text().replace(f"api_key_env: {KEY_ENV}", 'api_key_env: "sk-live-0123"')
    (tmp_path / "spec.sel").write_text(spec)
    proc = dslrun("check", "spec.sel", cwd=tmp_path)
    assert proc.returncode != 0
    assert "spec.sel:6:" in proc.stderr and "*name* of an environment variable" in proc.stderr


def test_a_missing_key_variable_is_reported_before_any_call(tmp_path):
    project(tmp_path, 2)
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    proc = subprocess.run([sys.executable, "-m", "dslrun.runtime.cli", "run", "spec.sel", "-q"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and f"needs the environment variable {KEY_ENV}" in proc.stderr


def test_a_missing_key_variable_of_a_step_without_positions_is_reported(tmp_path, monkeypatch):
    # A spec built in code carries no spans: the error used to point at None and crash rendering.
    project(tmp_path, 2)
    monkeypatch.delenv(KEY_ENV, raising=False)
    spec = load_spec(tmp_path / "spec.sel")
    bare = tuple(s.model_copy(update={"span": None, "op_span": None, "arg_spans": {}}) for s in spec.steps)
    plan = compile_spec(spec.model_copy(update={"steps": bare}), cwd=tmp_path)
    with pytest.raises(ErrorList) as err:
        check_credentials(plan)
    assert f"needs the environment variable {KEY_ENV}" in str(err.value) and "spec.sel" in str(err.value)


def test_shipped_alpagasus_spec_runs_against_the_server(tmp_path):
    with OpenAITestServer(seed=5) as srv:
        proc = dslrun_here("run", str(REPO / "specs" / "alpagasus.sel"), "--set", "limit=15", "--set",
                      f"base_url={srv.base_url}", "--set", "model=test-model", "--set", f"api_key_env={KEY_ENV}",
                      "-q", "--out", "out", cwd=tmp_path, env={KEY_ENV: SECRET}, check=True)
        assert srv.total == 15
    kept = json.loads((tmp_path / "out" / "selected.json").read_text())
    rows = scores_at(tmp_path / "out")
    assert len(kept) == len(rows) == sum(1 for r in rows if r["score"] >= 4.5)
    assert "kept" in proc.stdout


def scores_at(out: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(out / "selected.scores.parquet").to_pylist()


# ----------------------------------------------------------------------------- local backend
def test_local_backend_scores_deita_from_first_position_logits(tmp_path):
    torch = pytest.importorskip("torch")
    from testkit.tiny_lm import save_tiny_lm

    folder = save_tiny_lm(tmp_path / "lm")
    records = [{"instruction": f"Write a short story about robot {i}.", "input": "", "output": "Blue."}
               for i in range(3)]
    write_pool(tmp_path / "pool.json", records)
    (tmp_path / "spec.sel").write_text(
        f'pool = load(path: "pool.json")\n'
        f'c = judge-score(pool, template: deita-complexity, backend: local, model: "{folder}")\n'
        f'q = judge-score(c, template: alpagasus, backend: local, model: "{folder}", max_tokens: 8, column: acc)\n'
        f'save(q)\n')
    dslrun_here("run", "spec.sel", "-q", cwd=tmp_path, check=True)
    rows = scores(tmp_path)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)
    for rec, row in zip(records, rows, strict=True):
        prompt = JUDGES["deita-complexity"].messages(rec)[0]["content"]  # raw text, as DEITA sends it
        with torch.no_grad():
            logits = model(**tok(prompt, return_tensors="pt")).logits[0, -1]
        digit_logits = torch.tensor([logits[tok.convert_tokens_to_ids(str(d))] for d in range(1, 7)])
        want = float((digit_logits.softmax(-1) * torch.arange(1, 7)).sum())
        assert row["score"] == pytest.approx(want, abs=1e-5) and row["score_reason"] is None
        # a random tiny model does not write a number: AlpaGasus' -1, with the reason kept
        assert row["acc"] == -1.0 and row["acc_reason"].startswith("unparsable reply")
    again = dslrun_here("run", "spec.sel", "-q", cwd=tmp_path, check=True)
    assert "api:" not in again.stdout  # everything came from the cache


def test_deita_scores_from_server_top_logprobs(tmp_path):
    records = [{"instruction": f"Task {i}", "input": "", "output": "ok"} for i in range(4)]
    write_pool(tmp_path / "pool.json", records)
    (tmp_path / "spec.sel").write_text(
        'param base_url = "x"\npool = load(path: "pool.json")\n'
        f'c = judge-score(pool, template: deita-complexity, model: test-model, base_url: $base_url, '
        f'api_key_env: {KEY_ENV})\nsave(c)\n')
    seen: list[dict] = []

    def top(request: dict, first_token: str) -> dict[str, float]:
        seen.append(request)
        return {"3": -0.2, "4": -1.8, "x": -3.0}

    with OpenAITestServer(reply=lambda req: "3", top_logprobs=top) as srv:
        run(tmp_path, srv)
        assert srv.stats().outcomes["completions"] == 4
    want = (3 * math.exp(-0.2) + 4 * math.exp(-1.8)) / (math.exp(-0.2) + math.exp(-1.8))
    assert [r["score"] for r in scores(tmp_path)] == pytest.approx([want] * 4)
    # DEITA's raw prompt goes to /v1/completions as the local backend sends it: the text, no chat template
    prompts = {JUDGES["deita-complexity"].messages(r)[0]["content"] for r in records}
    assert {r["prompt"] for r in seen} == prompts and not any("messages" in r for r in seen)
    assert all(r["logprobs"] == 20 and "top_logprobs" not in r and r["max_tokens"] == 2 for r in seen)


def test_deita_without_raw_prompt_sends_chat_messages_under_another_key(tmp_path):
    records = [{"instruction": f"Task {i}", "input": "", "output": "ok"} for i in range(2)]
    write_pool(tmp_path / "pool.json", records)
    step = ('c = judge-score(pool, template: deita-complexity, model: test-model, base_url: $base_url, '
            f'api_key_env: {KEY_ENV}, raw_prompt: RAW)\nsave(c)\n')
    with OpenAITestServer(reply=lambda req: "3") as srv:
        for raw in ("false", "true"):
            (tmp_path / "spec.sel").write_text('param base_url = "x"\npool = load(path: "pool.json")\n'
                                               + step.replace("RAW", raw))
            run(tmp_path, srv)
        outcomes = srv.stats().outcomes
    # the chat replies are not taken for the completion's: each way was asked once
    assert outcomes["completions"] == 2 and srv.total == 4


def test_plan_counts_calls_tokens_and_money_before_any_call(tmp_path):
    project(tmp_path, 10)
    spec = (tmp_path / "spec.sel").read_text().replace("concurrency: $concurrency)",
                                                       "concurrency: $concurrency, price: {input: 1.0, output: 2.0})")
    (tmp_path / "spec.sel").write_text(spec)
    with OpenAITestServer() as srv:
        proc = dslrun_here("plan", "spec.sel", "--set", f"base_url={srv.base_url}", cwd=tmp_path, check=True)
        assert srv.total == 0
    row = next(line for line in proc.stdout.splitlines() if "judge-score" in line).split()
    n_in, n_out = map(int, row[-2].split("+"))
    assert row[-3] == "10" and n_out == 10 * 256  # calls; output bounded by max_tokens
    prompts = [JUDGES["alpagasus"].messages(r) for r in json.loads((tmp_path / "pool.json").read_text())]
    chars = sum(len(m["content"]) for msgs in prompts for m in msgs)
    assert chars // 5 < n_in < chars // 3
    # a price given for a loopback server is not a cost: it is not a known paid provider
    assert row[-1] == "-" and "no money cost (no price, or not a known paid provider)" in proc.stdout


def test_api_calls_overlap_with_model_work(tmp_path):
    """Deterministic: the model step holds its slot until the server has answered 3 requests
    (a file the test writes), or 120 s pass. Overlapping steps end it at once; an executor
    that ran the API step after the model step would keep it 120 s and fail the check."""
    project(tmp_path, 6)
    go = tmp_path / "three-requests-seen"
    (tmp_path / "spec.sel").write_text(
        'param base_url = "x"\npool = load(path: "pool.json")\n'
        f'm = slow-model(pool, seconds: 120, until: "{go}")\n'
        f'j = judge-score(pool, template: alpagasus, model: test-model, base_url: $base_url, api_key_env: {KEY_ENV},'
        ' concurrency: 1)\nsave(m)\nsave(j, path: "judged.json")\n')
    log = tmp_path / "model.log"
    seen: list[int] = []

    def count(request, n):
        seen.append(n)
        if len(seen) == 3:
            go.write_text("go")
        return None

    with OpenAITestServer(fault_fn=count) as srv:
        dslrun("run", "spec.sel", "-q", "--set", f"base_url={srv.base_url}", cwd=tmp_path, check=True,
               env={KEY_ENV: SECRET, "SLOW_MODEL_LOG": str(log), "DSLRUN_PLUGINS": "testkit.slow_ops",
                    "PYTHONPATH": str(Path(__file__).parent)})
        arrivals = srv.stats().arrivals
    start, end = map(float, log.read_text().split())
    assert len(arrivals) == 6
    # requests were answered while the model step held its slot
    assert sum(start < t < end for t in arrivals) >= 3
