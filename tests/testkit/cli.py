"""Running the real ``dslrun`` command in a temporary project folder."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"
POOL = SPECS / "data" / "alpaca_random_1k.json"
SHARED = REPO.parent / "shared"


def dslrun(*args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = False):
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "dslrun.runtime.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"dslrun {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    """``contextlib.chdir``, which Python 3.10 (still supported) does not have."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def dslrun_here(*args: str, cwd: Path, env: dict[str, str] | None = None,
                check: bool = False) -> subprocess.CompletedProcess:
    """``dslrun ARGS`` through ``cli.main`` in this process, answered as :func:`dslrun` answers.

    The same parser and handlers without a new interpreter: a subprocess costs about 2 s, and
    5-10 s more when the command imports torch. stdout and stderr (the log lines included, as
    the command's own ``basicConfig`` writes them) come back in the result; cwd, the
    environment and the per-process model memo are restored afterwards. Not for what needs a
    process of its own: a signal or a kill, ``DSLRUN_PLUGINS`` (read once per process), a
    ``TMPDIR`` the run must use, a plugin that patches the runtime.
    """
    from dslrun.runtime import cli
    from dslrun.runtime.models import resident

    assert "DSLRUN_PLUGINS" not in (env or {}), "plugins load once per process: use dslrun()"
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level, resolved = root.level, dict(resident._RESOLVED)
    resident._RESOLVED.clear()  # a new process resolves its models afresh (another DSLRUN_MODEL_CACHE)
    root.addHandler(handler)  # before main's basicConfig, which then adds none
    root.setLevel(logging.INFO)
    try:
        with _cwd(cwd), mock.patch.dict(os.environ, env or {}), \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as e:  # argparse
                code = e.code if isinstance(e.code, int) else 1
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        resident._RESOLVED.clear()
        resident._RESOLVED.update(resolved)
    proc = subprocess.CompletedProcess(["dslrun", *args], code, out.getvalue(), err.getvalue())
    if check and proc.returncode != 0:
        raise AssertionError(f"dslrun {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def write_pool(path: Path, records: list, fmt: str = "json") -> Path:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    else:
        path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def alpaca(n: int, start: int = 0) -> list[dict]:
    return [{"instruction": f"Task {i}", "input": "" if i % 3 else f"context {i}",
             "output": "word " * (1 + (i * 7919) % 50)} for i in range(start, start + n)]
