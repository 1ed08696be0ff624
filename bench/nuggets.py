"""Benchmark: ``nuggets`` golden scores vs the plain double loop over candidates and anchors.

On SmolLM2-135M, the first ``--anchors`` (20) of Nuggets' own anchor set
(``specs/data/nuggets_anchors_kmeans_100.json``) and the first ``--n`` (8) samples of
``shared/data/alpagasus/random_9k.json`` (the shipped 1k pool when shared data is absent):

(a) naive: every anchor's zero-shot score from its own forward pass, then for every
    candidate and every anchor one forward pass over candidate + anchor (no cache, no batch);
(b) the ``nuggets`` operator's scoring, run by the runtime as a spec runs it (no score
    cache): zero-shot scores once in length-packed batches, each candidate's key/value
    cache computed once and shared by batches of anchors.

It prints golden scores/s for both and whether the golden scores are identical. The last
line is machine-readable: ``nuggets_speedup=<x> identical=<true|false> device=<cpu|cuda>``.

    python bench/nuggets.py                     # ~3 min on 2 CPU cores
    python bench/nuggets.py --anchors 100 --n 64   # Nuggets' full anchor set (GPU)

Measured (2 shared CPU cores, other jobs running; 6 candidates × 16 anchors): naive
0.010 golden scores/s, operator 0.017 golden scores/s,
``nuggets_speedup=1.65 identical=true`` (4 × 10: 1.77, identical). On a CPU the gain is
the candidate's tokens no longer re-read for every anchor; a GPU adds batching.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

from dslrun.operators.influence.golden import (
    encode_anchor,
    encode_demo,
    golden_score,
    naive_one_shot,
)
from dslrun.operators.nuggets import GOLDEN, GoldenParams, GoldenScore, Nuggets, Scorer
from dslrun.runtime.data.pool_files import read_pool
from dslrun.runtime.execution.context import RunContext
from dslrun.runtime.execution.sample_runner import run_sample_op
from dslrun.runtime.models.resident import ModelPool, identity
from dslrun.runtime.models.resolve import shared_model_dirs

REPO = Path(__file__).resolve().parents[1]


def pool_file() -> Path:
    for models in shared_model_dirs():
        f = models.parent / "data" / "alpagasus" / "random_9k.json"
        if f.exists():
            return f
    return REPO / "specs" / "data" / "alpaca_random_1k.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--anchors", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    pool = read_pool(pool_file(), limit=args.n).table
    anchor_file = REPO / "specs" / "data" / "nuggets_anchors_kmeans_100.json"
    anchor_rows = read_pool(anchor_file, limit=args.anchors).table
    texts = [(str(a), str(b), str(c)) for a, b, c in zip(*(anchor_rows.column(k) for k in
                                                          ("instruction", "input", "output")))]
    op = Nuggets(Nuggets.params_type(anchors=str(anchor_file), model=args.model))
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(Path(tmp), Path(tmp), cache=None, models=ModelPool())
        model, tok = ctx.models.causal_lm(args.model)  # loaded once, outside both timings
        print(f"model {args.model} on {model.device} ({model.dtype}), {len(pool)} candidates × "
              f"{len(texts)} anchors, {torch.get_num_threads()} threads")
        cand = list(zip(*(pool.column(k) for k in ("instruction", "input", "output"))))

        start = time.perf_counter()
        anchors = [encode_anchor(tok, *t) for t in texts]
        zero = [naive_one_shot(model, [a], [])[0] for a in anchors]
        ref = [golden_score(zero, naive_one_shot(model, anchors, encode_demo(tok, *c))) for c in cand]
        t_ref = time.perf_counter() - start

        start = time.perf_counter()
        digest = hashlib.sha256(repr(texts).encode()).hexdigest()[:24]
        inner = GoldenScore(GoldenParams(anchors=digest, n_anchors=len(texts)), Scorer(op.params, ctx, texts),
                            identity(args.model, "causal-lm"))
        ours = [float(x) for x in run_sample_op(inner, pool, ctx).column(GOLDEN)]
        t_op = time.perf_counter() - start

    same = ours == ref
    n = len(cand)
    device = "cuda" if model.device.type == "cuda" else "cpu"
    print(f"naive double loop: {t_ref:7.2f} s  {n / t_ref:7.3f} golden scores/s")
    print(f"operator:          {t_op:7.2f} s  {n / t_op:7.3f} golden scores/s")
    if not same:
        diff = [(i, a, b) for i, (a, b) in enumerate(zip(ref, ours)) if a != b]
        print(f"differing golden scores (row, naive, operator): {diff}")
    print(f"nuggets_speedup={t_ref / t_op:.2f} identical={'true' if same else 'false'} device={device}")


if __name__ == "__main__":
    main()
