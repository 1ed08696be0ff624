"""What concurrent runs and a damaged or read-only score cache cost: one line per case.

A ``judge-score`` spec over ``--n`` prompts against the OpenAI-compatible test server
(tests/testkit), run with the real ``dslrun`` command:

* concurrent: two runs on one spec and cache at once → requests sent, exit codes;
* truncated / flipped / not-a-db: a complete cache damaged → exit code, first stderr line,
  requests the next run sends;
* read-only: a complete cache in a folder nobody may write (as root: capabilities dropped)
  → exit code, requests sent, first stderr line;
* deleted WAL: a run SIGKILLed after ``--n``/2 replies, its ``-wal`` deleted → what the
  next run says and how many requests it re-sends.

    python bench/cache_damage.py --n 200
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from testkit.cli import write_pool  # noqa: E402
from testkit.openai_server import OpenAITestServer  # noqa: E402

KEY = "DSLRUN_BENCH_KEY"
SPEC = """\
param base_url = "http://127.0.0.1:1/v1"
pool = load(path: "pool.json")
rated = judge-score(pool, template: alpagasus, model: test-model, base_url: $base_url,
                    api_key_env: DSLRUN_BENCH_KEY, timeout: 5, concurrency: 8)
save(rated)
"""


def project(root: Path, n: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_pool(root / "pool.json", [{"instruction": f"Explain idea {i}.", "input": "",
                                     "output": f"Idea {i}."} for i in range(n)])
    (root / "spec.sel").write_text(SPEC)
    return root


def cmd(srv: OpenAITestServer, out: str = "out") -> list[str]:
    return [sys.executable, "-m", "dslrun.runtime.cli", "run", "spec.sel", "-q", "--out", out,
            "--set", f"base_url={srv.base_url}"]


def run(root: Path, srv: OpenAITestServer, prefix: tuple[str, ...] = ()) -> tuple[int, str, int]:
    before = srv.total
    p = subprocess.run([*prefix, *cmd(srv)], cwd=root, env={**os.environ, KEY: "x"},
                       capture_output=True, text=True, timeout=600)
    first = next((ln for ln in p.stderr.splitlines() if ln.strip()), "")
    return p.returncode, first[:160], srv.total - before


def rows(db: Path) -> int:
    """Rows a fresh open sees, counted on a copy (opening the file itself would checkpoint its WAL)."""
    copy = Path(tempfile.mkdtemp()) / db.name
    for suffix in ("", "-wal"):
        if Path(f"{db}{suffix}").exists():
            shutil.copy(f"{db}{suffix}", f"{copy}{suffix}")
    c = sqlite3.connect(copy)
    try:
        return c.execute("SELECT count(*) FROM scores").fetchone()[0]
    except sqlite3.OperationalError:  # no table: nothing was ever checkpointed into the file
        return 0
    finally:
        c.close()


def damaged(tmp: Path, srv: OpenAITestServer, n: int, name: str, damage) -> None:
    root = project(tmp / name, n)
    run(root, srv)
    damage(root / ".dslrun" / "scores.sqlite")
    rc, first, sent = run(root, srv)
    rc2, _, again = run(root, srv)
    print(f"{name}: rc={rc} requests={sent} stderr={first!r}; next run rc={rc2} requests={again}")


def flip(db: Path) -> None:
    data = bytearray(db.read_bytes())
    for at in range(len(data) // 3, len(data), 997):
        data[at] ^= 0x5A
    db.write_bytes(bytes(data))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    n = args.n
    tmp = Path(tempfile.mkdtemp(prefix="dslrun-cache-bench-"))
    try:
        with OpenAITestServer(latency=0.05) as srv:
            root = project(tmp / "concurrent", n)
            env = {**os.environ, KEY: "x"}
            procs = [subprocess.Popen(cmd(srv, f"out{i}"), cwd=root, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL) for i in range(2)]
            rcs = [p.wait() for p in procs]
            print(f"concurrent: 2 runs, {n} prompts: requests={srv.total} rc={rcs}")

            srv.reset()
            damaged(tmp, srv, n, "truncated", lambda db: os.truncate(db, db.stat().st_size // 2))
            damaged(tmp, srv, n, "flipped", flip)
            damaged(tmp, srv, n, "not-a-db", lambda db: db.write_bytes(b"hello " * 1000))

            root = project(tmp / "readonly", n)
            run(root, srv)
            cache = root / ".dslrun"
            for f in cache.iterdir():
                f.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            cache.chmod(0o555)
            prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search") if os.geteuid() == 0 else ()
            rc, first, sent = run(root, srv, prefix)
            cache.chmod(0o755)
            print(f"read-only: rc={rc} requests={sent} stderr={first!r}")

            root = project(tmp / "wal", n)
            p = subprocess.Popen(cmd(srv), cwd=root, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            start = srv.total
            while srv.total - start < n // 2 and p.poll() is None:
                time.sleep(0.02)
            p.send_signal(signal.SIGKILL)
            p.wait()
            db = root / ".dslrun" / "scores.sqlite"
            had = rows(db)
            Path(f"{db}-wal").unlink(missing_ok=True)
            left = rows(db)
            rc, first, sent = run(root, srv)
            print(f"deleted WAL: rows {had} -> {left} (lost {had - left}); next run rc={rc} requests={sent} "
                  f"stderr={first!r}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
