"""Whole runs on a shared, damaged, read-only or rolled-back score cache (the real ``dslrun``
command against the OpenAI-compatible test server)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dslrun.runtime.cache.open_store import open_store
from testkit.cli import dslrun, write_pool
from testkit.openai_server import OpenAITestServer

pytest.importorskip("openai")

KEY = "DSLRUN_CACHE_TEST_KEY"
SPEC = """\
param base_url = "http://127.0.0.1:1/v1"
pool = load(path: "pool.json")
rated = judge-score(pool, template: alpagasus, model: test-model, base_url: $base_url,
                    api_key_env: DSLRUN_CACHE_TEST_KEY, timeout: 30, concurrency: 32)
save(rated)
"""


def project(tmp_path: Path, n: int) -> Path:
    write_pool(tmp_path / "pool.json", [{"instruction": f"Explain idea {i}.", "input": "", "output": f"Idea {i}."}
                                        for i in range(n)])
    (tmp_path / "spec.sel").write_text(SPEC)
    return tmp_path


def cmd(srv: OpenAITestServer, out: str) -> list[str]:
    return [sys.executable, "-m", "dslrun.runtime.cli", "run", "spec.sel", "-q", "--out", out,
            "--set", f"base_url={srv.base_url}"]


def run(tmp_path: Path, srv: OpenAITestServer, out: str = "out"):
    return dslrun(*cmd(srv, out)[3:], cwd=tmp_path, env={KEY: "x"})


def output(tmp_path: Path, out: str = "out") -> str:
    return (tmp_path / out / "selected.json").read_text()


class Lines:
    """A child's stderr, read as it comes; ``seen`` is set when a line contains ``needle``."""

    def __init__(self, proc: subprocess.Popen, needle: str):
        self.lines: list[str] = []
        self.seen = threading.Event()
        self._t = threading.Thread(target=self._read, args=(proc, needle), daemon=True)
        self._t.start()

    def _read(self, proc: subprocess.Popen, needle: str) -> None:
        for line in proc.stderr:
            self.lines.append(line)
            if needle in line:
                self.seen.set()

    def text(self) -> str:
        self._t.join(60)
        return "".join(self.lines)


def wait_until(cond, what: str, timeout: float = 120.0) -> None:
    """Poll for a condition a child process brings about (a hang guard, not a timing assertion)."""
    done = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if cond():
            return
        done.wait(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_concurrent_runs_on_one_cache_pay_each_prompt_once(tmp_path):
    n = 8  # the first run holds them all in flight at once: its adaptive limit starts at 8
    project(tmp_path, n)
    gate = threading.Event()
    env = {**os.environ, KEY: "x"}
    with OpenAITestServer(gate=gate) as srv:
        a = subprocess.Popen(cmd(srv, "a"), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        a_err = Lines(a, "\0")
        wait_until(lambda: srv.total >= n, "the first run's requests")  # all n held by the server
        b = subprocess.Popen(cmd(srv, "b"), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        b_err = Lines(b, "another run sharing the cache is computing")
        # Replies are held until the second run either waits for the first (claims) or sends
        # requests of its own (no claims): whichever it does, it has looked the cache up by then.
        wait_until(lambda: b_err.seen.is_set() or srv.total > n, "the second run to wait or send")
        gate.set()
        rcs = a.wait(120), b.wait(120)
        total, per_prompt = srv.total, dict(srv.stats().per_prompt)
    assert rcs == (0, 0), a_err.text() + b_err.text()
    assert total == n and set(per_prompt.values()) == {1}
    assert output(tmp_path, "a") == output(tmp_path, "b")
    assert b_err.seen.is_set()


def damage_then_rerun(tmp_path: Path, damage) -> tuple:
    project(tmp_path, 10)
    with OpenAITestServer() as srv:
        assert run(tmp_path, srv).returncode == 0
        before = output(tmp_path)
        db = tmp_path / ".dslrun" / "scores.sqlite"
        damage(db)
        first = srv.total
        proc = run(tmp_path, srv)
        again = srv.total
        third = run(tmp_path, srv)
        return proc, srv.total - first, srv.total - again, third, before, output(tmp_path), db


def flip_structure(db: Path) -> None:
    """Flip bytes in every b-tree page header past the first page (the structure, not values)."""
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    for start in range(page, len(data), page):
        for at in range(start, start + 12):
            data[at] ^= 0xA5
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("name,damage", [
    ("truncated", lambda db: os.truncate(db, db.stat().st_size // 2)),
    ("flipped", flip_structure),
    ("not-a-db", lambda db: db.write_bytes(b"this is not a database " * 200)),
])
def test_a_damaged_cache_is_moved_aside_and_the_run_continues(tmp_path, name, damage):
    proc, sent, sent_after, third, before, after, db = damage_then_rerun(tmp_path, damage)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"the score cache {db.relative_to(tmp_path)} is damaged" in proc.stderr
    assert "moved it aside to scores.sqlite.corrupt-" in proc.stderr and "are lost" in proc.stderr
    aside = [p.name for p in db.parent.iterdir() if ".corrupt-" in p.name]
    assert aside and all(p.startswith("scores.sqlite.corrupt-") for p in aside)
    assert sent == 10 and sent_after == 0  # recomputed once on the fresh cache, then cached
    assert third.returncode == 0 and "damaged" not in third.stderr
    assert after == before


def test_values_with_flipped_bytes_are_recomputed_not_fatal(tmp_path):
    def flip_values(db: Path) -> None:
        c = sqlite3.connect(db)
        c.execute("UPDATE scores SET value = substr(value, 1, 7) || '#' || substr(value, 9) "
                  "WHERE sample IN (SELECT sample FROM scores LIMIT 3)")
        c.commit()
        c.close()

    proc, sent, sent_after, _, before, after, _ = damage_then_rerun(tmp_path, flip_values)
    assert proc.returncode == 0, proc.stderr
    assert "do not decode" in proc.stderr
    assert (sent, sent_after) == (3, 0)
    assert after == before


def as_unprivileged() -> list[str]:
    """Root ignores file modes; without CAP_DAC_OVERRIDE it obeys them like anyone."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a folder read-only to this user")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def test_a_read_only_cache_serves_hits_and_computes_misses_without_storing(tmp_path):
    project(tmp_path, 10)
    with OpenAITestServer() as srv:
        assert run(tmp_path, srv).returncode == 0
        before = output(tmp_path)
        write_pool(tmp_path / "pool.json", [{"instruction": f"Explain idea {i}.", "input": "",
                                             "output": f"Idea {i}."} for i in range(13)])  # 3 new
        cache = tmp_path / ".dslrun"
        files = list(cache.iterdir())
        for f in files:
            f.chmod(0o444)
        cache.chmod(0o555)
        try:
            sent = srv.total
            proc = subprocess.run([*as_unprivileged(), *cmd(srv, "ro")], cwd=tmp_path, env={**os.environ, KEY: "x"},
                                  capture_output=True, text=True, timeout=300)
            sent = srv.total - sent
        finally:
            cache.chmod(0o755)
            for f in files:
                f.chmod(0o644)
        assert sorted(p.name for p in cache.iterdir()) == sorted(f.name for f in files)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("is read-only: cached scores are used") == 1
    assert sent == 3
    got = json.loads(output(tmp_path, "ro"))
    assert len(got) == 13 and json.dumps(got[:10], ensure_ascii=False) == json.dumps(json.loads(before),
                                                                                    ensure_ascii=False)


def test_a_wal_deleted_after_a_kill_is_noticed(tmp_path):
    """Commits live in the -wal until a checkpoint: deleting it after a SIGKILL loses them.
    That cannot be undone, but the next open says so instead of re-paying silently."""
    cache = tmp_path / ".dslrun"
    writer = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from dslrun.runtime.cache.open_store import open_store\n"
        "s = open_store(Path(sys.argv[1]))\n"
        "s.register('n', 'op', '1', {}, '')\n"
        "for b in range(int(sys.argv[2])):\n"
        "    s.put_many('n', [(f'{b}-{i}', {'v': i}) for i in range(7)])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    first = subprocess.run([sys.executable, "-c", writer, str(cache), "3"])
    assert first.returncode == -signal.SIGKILL
    s = open_store(cache, warn=pytest.fail)  # a kill alone loses nothing committed
    assert s.count("n", [f"{b}-{i}" for b in range(3) for i in range(7)]) == 21
    s.close()  # a clean close checkpoints the WAL into the file
    second = subprocess.run([sys.executable, "-c", writer, str(cache), "5"])
    assert second.returncode == -signal.SIGKILL
    (cache / "scores.sqlite-wal").unlink()
    warnings: list[str] = []
    s = open_store(cache, warn=warnings.append)
    try:
        assert s.count("n", [f"{b}-{i}" for b in range(5) for i in range(7)]) == 21  # the 5 batches re-put 3
        assert len(warnings) == 1 and "lost 5 committed batches (35 scores)" in warnings[0]
        assert "-wal file was deleted" in warnings[0]
    finally:
        s.close()
    again: list[str] = []
    open_store(cache, warn=again.append).close()
    assert again == []  # said once; the mark now follows the file as it is
