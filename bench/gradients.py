"""Benchmark: ``gradient-sim``'s per-sample gradient features vs a loop written the way LESS runs.

On SmolLM2-135M with LoRA (q/k/v/o, rank ``--r``) and the first ``--n`` samples of
``shared/data/alpagasus/random_9k.json`` (the shipped 1k pool when shared data is absent):
a short real warm-up (``--warmup`` samples, one epoch) gives a checkpoint with Adam
moments; then Adam-preconditioned features (float16, Rademacher projection to ``--dim``,
L2-normalised) are computed twice:

(a) naive (LESS's ``collect_grads``): one sample at a time, ``loss.backward()``, the
    gradient read from ``p.grad``, Adam-preconditioned, projected every 16 samples;
(b) the operator's ``Runner.features``: per-sample gradients of a padded batch from one
    forward and one backward pass (captured LoRA activations × output gradients), all
    samples projected together.

It prints features/s for both and the largest relative difference between the two
feature sets. The last line is machine-readable:
``grad_speedup=<x> max_rel_diff=<y> device=<cpu|cuda>``.

    python bench/gradients.py                   # ~3 min on 2 CPU cores
    python bench/gradients.py --r 128 --dim 8192 --n 64    # LESS's defaults (GPU)

Measured on 2 CPU cores shared with other jobs (24 samples, r 8, dim 1024): naive 0.85
features/s, operator 1.56 features/s, ``grad_speedup=1.84 max_rel_diff=2.19e-04``; an
earlier run under heavier, uneven load read 8.05, so take the quiet one. A CPU is
compute-bound either way: the gain here is from projecting only the response positions
onto the vocabulary and from one projection pass; on a GPU, batching is the larger gain.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dslrun.operators.gradient_sim import GradientSimParams
from dslrun.operators.influence.grads import adam_precondition, trainable
from dslrun.operators.influence.project import features
from dslrun.operators.influence.runner import Runner
from dslrun.runtime.data.pool_files import read_pool
from dslrun.runtime.execution.context import RunContext
from dslrun.runtime.models.resident import ModelPool
from dslrun.runtime.models.resolve import shared_model_dirs

REPO = Path(__file__).resolve().parents[1]


def pool_file() -> Path:
    for models in shared_model_dirs():
        f = models.parent / "data" / "alpagasus" / "random_9k.json"
        if f.exists():
            return f
    return REPO / "specs" / "data" / "alpaca_random_1k.json"


def naive_features(runner: Runner, conversations: list, dim: int, seed: int):
    """LESS's loop: backward per sample, p.grad, Adam, project every 16."""
    import torch

    model = runner.model
    m, v = runner._checkpoint(0)
    pending, out = [], []
    for e in runner.encode(conversations):
        model.zero_grad(set_to_none=True)
        labels = torch.tensor([t if s else -100 for t, s in zip(e.ids, e.labels)], device=m.device)[None]
        model(input_ids=torch.tensor([e.ids], device=m.device), labels=labels).loss.backward()
        g = torch.cat([p.grad.flatten().float() for _, p in trainable(model)])
        pending.append(adam_precondition(g, m, v).to(torch.float16))
        if len(pending) == 16:
            out.append(features(torch.stack(pending), dim, seed))
            pending = []
    if pending:
        out.append(features(torch.stack(pending), dim, seed))
    model.zero_grad(set_to_none=True)
    return torch.cat(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    pool = read_pool(pool_file(), limit=args.n + args.warmup).table
    warm, cand = pool.slice(0, args.warmup), pool.slice(args.warmup, len(pool))
    p = GradientSimParams(target=str(REPO), model=args.model, r=args.r, alpha=4 * args.r, epochs=1, dim=args.dim,
                          warmup_fraction=1.0, grad_accum=2, lr=1e-4)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(Path(tmp), Path(tmp), cache=None, models=ModelPool())
        runner = Runner(p, ctx, Path(tmp))
        runner.warm_up(warm)
        model = runner.model
        print(f"model {args.model} on {model.device} ({model.dtype}), LoRA r={args.r}: "
              f"{sum(x.numel() for _, x in trainable(model)):,} weights; {len(cand)} samples; dim {args.dim}; "
              f"{torch.get_num_threads()} threads")
        convs = list(cand.column("messages"))
        runner._checkpoint(0)  # load the checkpoint outside both timings

        start = time.perf_counter()
        ref = naive_features(runner, convs, args.dim, p.projection_seed).cpu().numpy()
        t_ref = time.perf_counter() - start

        start = time.perf_counter()
        ours = runner.features(convs, "adam", ctx)
        t_op = time.perf_counter() - start

    got = np.stack([f[0].astype(np.float32) for f in ours])
    rel = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)
    n = len(convs)
    device = "cuda" if model.device.type == "cuda" else "cpu"
    print(f"naive loop (LESS): {t_ref:7.2f} s  {n / t_ref:7.2f} features/s")
    print(f"operator:          {t_op:7.2f} s  {n / t_op:7.2f} features/s")
    print(f"grad_speedup={t_ref / t_op:.2f} max_rel_diff={rel.max():.2e} device={device}")


if __name__ == "__main__":
    main()
