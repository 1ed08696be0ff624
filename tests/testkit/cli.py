"""Running the real ``dslrun`` command in a temporary project folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def write_pool(path: Path, records: list, fmt: str = "json") -> Path:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    else:
        path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def alpaca(n: int, start: int = 0) -> list[dict]:
    return [{"instruction": f"Task {i}", "input": "" if i % 3 else f"context {i}",
             "output": "word " * (1 + (i * 7919) % 50)} for i in range(start, start + n)]
