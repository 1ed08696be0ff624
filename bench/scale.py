"""Benchmark: a large synthetic pool through ``load → length → derive → rank → save``, against
a plain pyarrow script doing the same work, in one invocation on the same generated pool.

The pyarrow script reads the JSONL with ``pyarrow.json.read_json`` (multi-threaded), counts
characters and words of instruction, input and output with ``pyarrow.compute``, ranks by
output words / (1 + instruction words), takes the top 10% and writes them as JSONL. dslrun
runs the same pipeline as a spec (``SPEC`` below) with an empty score cache. Each side is a
fresh process; its CPU time (user + system) and peak RSS come from the kernel (``wait4``),
so threads and helpers the process starts are counted. The Ray engine is measured too with
``--ray`` (its workers are other processes: only the driver is counted there).

The last line is machine-readable:
``scale_rows=<n> cpu_ratio_vs_arrow=<dslrun cpu / pyarrow cpu> peak_rss_gib=<dslrun's peak>``.

    python bench/scale.py --rows 1000000     # ~5 min on 2 cores (the pool is ~500 MiB)
    python bench/scale.py --rows 100000      # ~30 s

Run it on a quiet machine (``uptime``: load near 0); CPU seconds are less sensitive to load
than wall time, but caches and memory bandwidth are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """\
param pool = "pool.jsonl"
pool = load(path: $pool)
lengths = length(pool)
scored = derive(lengths, column: richness, expr: output_words / (1 + instruction_words))
top = rank(scored, by: richness, fraction: 0.1)
save(top)
"""

WORDS = ["data", "model", "answer", "explain", "write", "list", "code", "sum", "story",
         "robot", "colour", "prime", "city", "river", "number", "light", "sound", "table",
         "value", "method", "paper", "review", "short", "long", "clear", "simple"]


def write_pool(path: Path, rows: int, seed: int = 0) -> None:
    """Alpaca-style JSONL: instructions of 4-16 words, a third with an input, responses of 5-120 words."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            rec = {"instruction": f"Task {i}: " + " ".join(rng.choices(WORDS, k=rng.randint(4, 16))),
                   "input": " ".join(rng.choices(WORDS, k=rng.randint(3, 30))) if i % 3 == 0 else "",
                   "output": " ".join(rng.choices(WORDS, k=rng.randint(5, 120)))}
            f.write(json.dumps(rec) + "\n")


ARROW = """\
import json, sys
import pyarrow as pa, pyarrow.compute as pc, pyarrow.json as pj
table = pj.read_json(sys.argv[1])
if table.nbytes >= 2**31:  # take() concatenates a column's chunks: past 2 GiB of text, 32-bit offsets overflow
    table = table.cast(pa.schema([(f.name, pa.large_string() if f.type == pa.string() else f.type)
                                  for f in table.schema]))
words = {p: pc.count_substring_regex(table[p], r"\\S+") for p in ("instruction", "input", "output")}
chars = {p: pc.utf8_length(table[p]) for p in ("instruction", "input", "output")}
richness = pc.divide(pc.cast(words["output"], pa.float64()), pc.add(pc.cast(words["instruction"], pa.float64()), 1.0))
top = table.take(pc.sort_indices(richness, sort_keys=[("", "descending")])[: len(table) // 10])
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for batch in top.to_batches(65536):
        f.writelines(json.dumps(r) + "\\n" for r in batch.to_pylist())
"""


class Measured:
    """One process's wall time, CPU seconds (user + system, its threads included) and peak RSS."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str] | None = None):
        t0 = time.perf_counter()
        with open(cwd / "stdout.log", "w") as out, open(cwd / "stderr.log", "w") as err:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)
        self.wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{(cwd / 'stderr.log').read_text()[-3000:]}")
        self.cpu = usage.ru_utime + usage.ru_stime
        self.rss_gib = usage.ru_maxrss / 2**20  # KiB on Linux

    def __str__(self) -> str:
        return f"{self.cpu:.1f}s CPU, {self.wall:.1f}s wall, peak RSS {self.rss_gib:.2f} GiB"


def run(work: Path, engine: list[str], out: str) -> tuple[Measured, dict]:
    cmd = [sys.executable, "-m", "dslrun.runtime.cli", "run", "spec.sel", "-q", "--out", out,
           "--cache-dir", f"cache-{out}", *engine]
    measured = Measured(cmd, work, os.environ.copy())
    return measured, json.loads((work / out / "run.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--ray", action="store_true", help="also run the Ray engine (a throwaway local cluster)")
    ap.add_argument("--address", help="an existing Ray cluster for --ray")
    ap.add_argument("--work", type=Path, help="a folder to work in and keep (the pool is reused when it has "
                                              "--rows rows): a 10M-row pool takes minutes to write")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="dslrun-scale-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for old in ("local", "ray", "cache-local", "cache-ray", "arrow.jsonl"):
            shutil.rmtree(work / old, ignore_errors=True) if (work / old).is_dir() else (work / old).unlink(missing_ok=True)
        t0 = time.perf_counter()
        stamp = work / "pool.rows"
        if not (stamp.is_file() and stamp.read_text() == str(args.rows) and (work / "pool.jsonl").is_file()):
            write_pool(work / "pool.jsonl", args.rows)
            stamp.write_text(str(args.rows))
        size = (work / "pool.jsonl").stat().st_size
        print(f"pool: {args.rows} rows, {size / 2**20:.0f} MiB JSONL, ready in {time.perf_counter() - t0:.1f}s")
        (work / "spec.sel").write_text(SPEC)
        (work / "arrow_script.py").write_text(ARROW)
        arrow = Measured([sys.executable, "arrow_script.py", "pool.jsonl", "arrow.jsonl"], work)
        print(f"pyarrow script: {arrow}")
        local, info = run(work, ["--engine", "local"], "local")
        steps = {n: round(s["seconds"], 1) for n, s in info["nodes"].items()}
        print(f"dslrun (local): {local}; steps {steps}")
        same = _records(work / "local" / "selected.jsonl") == _records(work / "arrow.jsonl")
        print(f"same selection as the pyarrow script: {same}")
        if args.ray:
            engine = ["--engine", "ray"] + (["--address", args.address] if args.address else [])
            ray, info = run(work, engine, "ray")
            same = (work / "local" / "selected.jsonl").read_bytes() == (work / "ray" / "selected.jsonl").read_bytes()
            print(f"dslrun (ray, driver only): {ray}; cluster {info['engine']}; outputs identical: {same}")
        print(f"scale_rows={args.rows} cpu_ratio_vs_arrow={local.cpu / arrow.cpu:.2f} "
              f"peak_rss_gib={local.rss_gib:.2f}")


def _records(path: Path) -> set[str]:
    """The selected records as a set (ties at the cut may be ordered differently)."""
    with path.open(encoding="utf-8") as f:
        return {json.dumps(json.loads(line), sort_keys=True) for line in f}


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    main()
