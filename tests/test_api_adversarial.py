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

    from dslrun.runtime.cache.unsaved import describe_write_error

    f = tmp_path / "out" / "x.json"
    assert describe_write_error(OSError(errno.ENOSPC, "No space left on device", str(f)), f) == \
        f"no space left on {f.parent}"
    assert describe_write_error(sqlite3.OperationalError("database or disk is full"), tmp_path) == \
        f"no space left on {tmp_path}"
    assert describe_write_error(OSError(errno.EACCES, "Permission denied", str(f)), f) == f"permission denied: {f}"
    assert describe_write_error(sqlite3.OperationalError("attempt to write a readonly database"), f) == \
        f"permission denied: {f}"


# ----------------------------------------------------------------------------- secrets
def test_the_key_is_in_no_file_written_by_failing_or_succeeding_runs(tmp_path):
    # 6 samples, not 12: the failing run's retries back off one at a time once concurrency has
    # fallen to 1 (~1 s a sample). Seed 6 gives the good run's first attempts a hang, a drop, a
    # 500 and a malformed reply (seed 4 on 12 samples: a hang and a malformed reply); a 3 s
    # timeout ends the hang, which took 10 s (this server answers in milliseconds, and a
    # timed-out call is retried).
    n = 6
    project(tmp_path, n, timeout=3)
    tmp = tmp_path / "tmpdir"  # anything a run writes to the temporary folder is scanned too
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}
    procs = []
    with OpenAITestServer(api_key="the-right-key") as refused:  # its 401 quotes the key it got
        procs.append(run(tmp_path, refused, env=env))
    with OpenAITestServer(api_key=SECRET, fault_fn=lambda req, n: "500") as failing:  # every call fails
        procs.append(run(tmp_path, failing, "mff=0.5", env=env))
        assert failing.stats().outcomes["500"] == n * 3  # the key was accepted: every sample, 3 attempts
    with OpenAITestServer(api_key=SECRET, fault_rate=0.2, seed=6, retry_after="0.05") as good:
        procs.append(run(tmp_path, good, env=env))
        assert good.stats().outcomes["401"] == 0 and good.stats().outcomes["ok"] >= n // 2
        assert {"hang", "drop", "500", "malformed"} <= set(good.stats().outcomes)
    assert [p.returncode for p in procs] == [1, 1, 0]
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "pool.json"]
    assert {"scores.sqlite", "selected.json", "dslrun.lock.json", "run.json", "report.html"} <= {
        p.name for p in written}
    text = "".join(p.stdout + p.stderr for p in procs)
    text += "".join(p.read_bytes().decode("utf-8", errors="replace") for p in written)
    for fragment in (SECRET, SECRET[3:27], SECRET[-16:]):
        assert fragment not in text
    assert f"${KEY_ENV}" in procs[0].stderr  # the refusal names the variable instead


# ----------------------------------------------------------------------------- the fault mix
MIX = ("429", "500", "503", "hang", "drop", "bad_json", "empty_choices", "null_content", "malformed",
       "out_of_scale", "nan")


def test_under_a_20_percent_fault_mix_every_sample_is_scored_or_has_a_reason(tmp_path):
    n = 200
    # a 2 s timeout (was 5): once the faults have brought concurrency down to one or two, each of
    # the 4 hangs holds a slot until it times out (23 s of calls, 13 s now); this server answers in
    # milliseconds, and a call that timed out for another reason would only be retried
    project(tmp_path, n, timeout=2, attempts=4)
    spec = tmp_path / "spec.sel"
    spec.write_text(spec.read_text().replace("save(kept)", "save(rated)")  # every row, scored or not
                    .replace("concurrency: 4", "concurrency: 16"))
    with OpenAITestServer(fault_rate=0.2, fault_kinds=MIX, seed=7, retry_after="0.05") as srv:
        proc = run(tmp_path, srv, "mff=1")
        injected = srv.stats().outcomes
    assert proc.returncode == 0, proc.stderr
    assert set(MIX) <= set(injected), injected  # every kind of fault happened
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "out" / "spec" / "selected.scores.parquet").to_pylist()
    assert len(rows) == n
    kinds = {"ok": 0, "unparsable": 0, "out of scale": 0, "failed": 0}
    for r in rows:
        reason = r["score_reason"]
        if reason is None:
            assert 0 <= r["score"] <= 5
            kinds["ok"] += 1
        elif reason.startswith("unparsable reply"):
            assert r["score"] == -1
            kinds["unparsable"] += 1
        elif reason.startswith("out of scale: "):
            assert r["score"] == -1 and reason.split()[3] in ("99", "nan")
            kinds["out of scale"] += 1
        else:
            assert reason.startswith("failed: "), reason
            kinds["failed"] += 1
    assert kinds["unparsable"] and kinds["out of scale"] and sum(kinds.values()) == n
    line = next(ln for ln in proc.stdout.splitlines() if "outcomes:" in ln)
    assert line.startswith(f"rated: outcomes: {n} samples: {kinds['ok']} ok, {kinds['unparsable']} unparsable, "
                           f"{kinds['out of scale']} out of scale, {kinds['failed']} failed")
    # every paid reply that is not a score is cached with its raw text; failed samples are not
    cache = cached(tmp_path)
    for r in rows:
        if r["score_reason"] and not r["score_reason"].startswith("failed"):
            assert cache[r["id"]]["raw"] is not None
    assert len(cache) == n - kinds["failed"]
