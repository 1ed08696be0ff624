"""Benchmark: ``gradient-sim``'s two projectors, ``dslrun`` (default) and ``trak`` (TRAK's
``BasicProjector`` as LESS calls it), on real per-sample LoRA gradients.

The model's LoRA (q/k/v/o, rank ``--r``; SmolLM2-135M: 921,600 weights at r 8, 14.7M at
r 128) gives the plain gradients of the first ``--n`` samples of the shipped pool, cast to
float16 as both projectors take them. Each projector maps them to ``--dim`` and
L2-normalises; the cosines of the features are compared with the exact cosines of the
full gradients (float64). Both draw their matrix afresh on every call, so a call costs
the draw plus a product: the time per 1k gradients is given for LESS's batches of 16
and for one call over all ``--n`` (the operator projects a whole group per call).

Last line, machine-readable:
``p=<P> dim=<d> ours_s_per_1k_b16=… trak_s_per_1k_b16=… ours_s_per_1k_bN=… trak_s_per_1k_bN=…
ours_max_abs_ip_err=… trak_max_abs_ip_err=…``

    python bench/projection.py                       # r 8, dim 1024, 32 samples: a few minutes on 2 cores
    python bench/projection.py --r 128 --dim 8192    # LESS's sizes: TRAK's block alone needs ~15 GB here

Measured on 2 CPU cores shared with other jobs (r 8, P 921,600, dim 1024, 32 samples; see
the operator's docstring and the README for the numbers).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def gradients(model_name: str, r: int, n: int):
    """(n × P) float16 plain per-sample gradients of a fresh LoRA (B = 0: A's gradients are 0)."""
    import torch

    from dslrun.operators.influence.encode import TULU, encode_samples
    from dslrun.operators.influence.grads import batched_gradients
    from dslrun.operators.influence.warmup import WarmupConfig, lora_model
    from dslrun.runtime.data.pool_files import read_pool
    from dslrun.runtime.models.resident import ModelPool

    base, tok = ModelPool().causal_lm(model_name, device="cpu")
    model = lora_model(base, WarmupConfig(r=r, alpha=4 * r)).eval()
    pool = read_pool(REPO / "specs" / "data" / "alpaca_random_1k.json", limit=n).table
    enc = [e for e in encode_samples(tok, list(pool.column("messages")), TULU, 512) if e.n_labels > 0]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return torch.cat([batched_gradients(model, enc[i:i + 8], pad) for i in range(0, len(enc), 8)]).to(torch.float16)


def timed(fn, x, repeat: int) -> tuple[float, object]:
    """The fastest of *repeat* calls (the least disturbed by other jobs on shared cores)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(x)
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=2, help="calls per timing; the fastest counts")
    args = ap.parse_args()

    import torch

    from dslrun.operators.influence.project import features
    from dslrun.operators.influence.trak_projection import TrakProjector

    g = gradients(args.model, args.r, args.n)
    n, p = g.shape
    print(f"{n} gradients of P={p:,} (LoRA r {args.r}), dim {args.dim}, {torch.get_num_threads()} threads")
    unit = torch.nn.functional.normalize(g.double(), dim=1)
    exact = unit @ unit.T
    off = ~torch.eye(n, dtype=torch.bool)
    print(f"exact cosines off the diagonal: {exact[off].min():.3f} .. {exact[off].max():.3f}")

    trak = TrakProjector(args.dim, args.seed, torch.float32)
    projectors = {"ours": lambda x: features(x, args.dim, args.seed), "trak": trak}
    results: dict[str, float] = {}
    for name, fn in projectors.items():
        t16, _ = timed(fn, g[:16], args.repeat)
        tall, feats = timed(fn, g, args.repeat)
        err = ((feats.double() @ feats.double().T) - exact)[off].abs()
        results |= {f"{name}_s_per_1k_b16": t16 * 1000 / 16, f"{name}_s_per_1k_bN": tall * 1000 / n,
                    f"{name}_max_abs_ip_err": err.max().item()}
        print(f"{name}: {t16:7.2f} s for 16 ({t16 * 1000 / 16:8.1f} s per 1k), {tall:7.2f} s for {n} "
              f"({tall * 1000 / n:8.1f} s per 1k); |cos error| max {err.max():.4f} mean {err.mean():.4f}")
    print(f"p={p} dim={args.dim} " + " ".join(f"{k}={v:.4g}" for k, v in results.items()))


if __name__ == "__main__":
    main()
