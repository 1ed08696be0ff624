"""Benchmark: a large synthetic pool through ``load → length → derive → rank → save``,
on the local engine and on Ray (a throwaway local Ray cluster, or ``--address``).

Each run is a fresh ``dslrun run`` process with an empty score cache; its wall time is
measured here and its peak RSS is the driver's own (``driver_peak_rss_mib`` in run.json,
from getrusage). Ray's worker processes are not the driver and are not counted.

The last line is machine-readable:
``scale_rows=<n> local_s=<x> ray_s=<y> peak_rss_gib=<z>`` (z: the larger driver peak).

    python bench/scale.py                  # 1M rows: ~3.5 min on 2 cores; drivers peak at ~0.6-1 GiB
    python bench/scale.py --rows 100000    # ~30 s

A pool over 100k rows keeps its text on disk (runtime/data/disk_columns.py); ``--spill-rows``
moves that threshold (``--spill-rows 0``: always; a huge number: never, the old layout).
"""

from __future__ import annotations

import argparse
import json
import os
import random
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


def run(work: Path, engine: list[str], out: str, spill_rows: int | None) -> tuple[float, float, dict]:
    cmd = [sys.executable, "-m", "dslrun.runtime.cli", "run", "spec.sel", "-q", "--out", out,
           "--cache-dir", f"cache-{out}", *engine]
    env = {**os.environ, **({"DSLRUN_SPILL_ROWS": str(spill_rows)} if spill_rows is not None else {})}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    info = json.loads((work / out / "run.json").read_text())
    return wall, info["driver_peak_rss_mib"] / 1024, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--address", help="an existing Ray cluster (default: a throwaway local one)")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--in-memory-baseline", action="store_true",
                    help="also run local with the whole pool in memory (the layout before text went to disk)")
    ap.add_argument("--spill-rows", type=int, help="pools over this many rows keep their text on disk (default 100k)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dslrun-scale-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        write_pool(work / "pool.jsonl", args.rows)
        size = (work / "pool.jsonl").stat().st_size
        print(f"pool: {args.rows} rows, {size / 2**20:.0f} MiB JSONL, written in {time.perf_counter() - t0:.1f}s")
        (work / "spec.sel").write_text(SPEC)
        local_s, local_rss, info = run(work, ["--engine", "local"], "local", args.spill_rows)
        steps = {n: round(s["seconds"], 1) for n, s in info["nodes"].items()}
        print(f"local: {local_s:.1f}s wall, driver peak RSS {local_rss:.2f} GiB; steps {steps}")
        ray_s, ray_rss = float("nan"), 0.0
        if not args.skip_ray:
            engine = ["--engine", "ray"] + (["--address", args.address] if args.address else [])
            ray_s, ray_rss, info = run(work, engine, "ray", args.spill_rows)
            steps = {n: round(s["seconds"], 1) for n, s in info["nodes"].items()}
            print(f"ray:   {ray_s:.1f}s wall, driver peak RSS {ray_rss:.2f} GiB; steps {steps}; "
                  f"cluster {info['engine']}")
            same = (work / "local" / "selected.jsonl").read_bytes() == (work / "ray" / "selected.jsonl").read_bytes()
            print(f"outputs identical: {same}")
        if args.in_memory_baseline:  # the same local run with the text in memory, for the ratio
            mem_s, mem_rss, _ = run(work, ["--engine", "local"], "memory", 2**62)
            same = (work / "local" / "selected.jsonl").read_bytes() == (work / "memory" / "selected.jsonl").read_bytes()
            print(f"local, text in memory: {mem_s:.1f}s wall, driver peak RSS {mem_rss:.2f} GiB "
                  f"({mem_rss / local_rss:.2f}x the text-on-disk run); outputs identical: {same}")
        print(f"scale_rows={args.rows} local_s={local_s:.1f} ray_s={ray_s:.1f} "
              f"peak_rss_gib={max(local_rss, ray_rss):.2f}")


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    main()
