"""API runs when things go wrong: a full disk or a refused write under the cache, a key that
must not leak whatever happens, and an endpoint that fails in every way at once."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from testkit.cli import dslrun, write_pool
from testkit.openai_server import OpenAITestServer

pytest.importorskip("openai")

TESTS = Path(__file__).parent
KEY_ENV, SECRET = "DSLRUN_ADVERSARIAL_KEY", "sk-adversarial-0f1e2d3c4b5a69788796a5b4c3d2e1f0"

SPEC = """\
param base_url = "http://127.0.0.1:1/v1"
param threshold = -100
param mff = 0.5
pool = load(path: "pool.json")
rated = judge-score(pool, template: alpagasus, model: test-model, base_url: $base_url, api_key_env: {key},
                    timeout: {timeout}, max_attempts: {attempts}, concurrency: 4, max_failed_fraction: $mff)
kept = filter(rated, where: score >= $threshold)
save(kept)
"""


def project(tmp_path: Path, n: int, timeout: float = 30, attempts: int = 3) -> list[dict]:
    records = [{"instruction": f"Task {i}", "input": "", "output": f"answer {i}"} for i in range(n)]
    write_pool(tmp_path / "pool.json", records)
    (tmp_path / "spec.sel").write_text(SPEC.format(key=KEY_ENV, timeout=timeout, attempts=attempts))
    return records


def run(tmp_path: Path, srv: OpenAITestServer, *sets: str, env: dict | None = None):
    args = ["run", "spec.sel", "-q", "--set", f"base_url={srv.base_url}"]
    for s in sets:
        args += ["--set", s]
    return dslrun(*args, cwd=tmp_path, env={KEY_ENV: SECRET, **(env or {})})


def cached(tmp_path: Path) -> dict[str, dict]:
    db = sqlite3.connect(tmp_path / ".dslrun" / "scores.sqlite")
    try:
        return {s: json.loads(v) for s, v in db.execute(
            "SELECT s.sample, s.value FROM scores s JOIN nodes n ON s.node = n.node WHERE n.op = 'judge-score'")}
    finally:
        db.close()


# ----------------------------------------------------------------------------- failed writes
FULL_DISK = {"DSLRUN_PLUGINS": "testkit.full_disk", "PYTHONPATH": str(TESTS)}


def test_a_full_disk_under_the_cache_names_it_and_keeps_every_paid_reply(tmp_path):
    project(tmp_path, 30)
    side = tmp_path / "out" / "spec" / "unsaved-replies.jsonl"
    with OpenAITestServer(latency=0.02) as srv:
        proc = run(tmp_path, srv, env={**FULL_DISK, "FULL_DISK_AFTER": "5"})
        paid = srv.stats().outcomes["ok"]
        assert proc.returncode == 1
        assert "error: step `rated` (judge-score): no space left on .dslrun: the score cache could not be written" in proc.stderr
        assert "ResultCallbackError" not in proc.stderr and "Traceback" not in proc.stderr
        kept = [json.loads(line) for line in side.read_text().splitlines()]
        assert f"{len(kept)} paid replies kept in out/spec/unsaved-replies.jsonl" in proc.stderr
        assert len(cached(tmp_path)) == 5 and 1 <= len(kept) <= 4  # the one that failed + those in flight
        assert len(cached(tmp_path)) + len(kept) == paid  # every reply that arrived is somewhere
        # the next run imports them and pays for none of them again
        again = run(tmp_path, srv)
        assert again.returncode == 0, again.stderr
        assert srv.stats().outcomes["ok"] == 30 and srv.total == 30
    assert not side.exists() and len(cached(tmp_path)) == 30
    assert {k["sample"] for k in kept} <= set(cached(tmp_path))


def test_a_refused_write_says_permission_denied_and_the_path(tmp_path):
    project(tmp_path, 8)
    with OpenAITestServer() as srv:
        proc = run(tmp_path, srv, env={**FULL_DISK, "FULL_DISK_AFTER": "0", "FULL_DISK_ERRNO": "13"})
    assert proc.returncode == 1
    assert "permission denied: .dslrun/scores.sqlite" in proc.stderr
    assert "paid replies kept in out/spec/unsaved-replies.jsonl" in proc.stderr


def test_write_errors_in_words(tmp_path):
    import errno

    from dslrun.runtime.unsaved import describe_write_error

    f = tmp_path / "out" / "x.json"
    assert describe_write_error(OSError(errno.ENOSPC, "No space left on device", str(f)), f) == \
        f"no space left on {f.parent}"
    assert describe_write_error(sqlite3.OperationalError("database or disk is full"), tmp_path) == \
        f"no space left on {tmp_path}"
    assert describe_write_error(OSError(errno.EACCES, "Permission denied", str(f)), f) == f"permission denied: {f}"
    assert describe_write_error(sqlite3.OperationalError("attempt to write a readonly database"), f) == \
        f"permission denied: {f}"
