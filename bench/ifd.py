"""Benchmark: the ``ifd`` operator vs a reference loop written the way the original scripts run.

On SmolLM2-135M and the first ``--n`` (200) samples of ``shared/data/alpagasus/random_9k.json``,
in one process:

(a) reference: one sample at a time, two plain forward passes (``model(ids, labels=labels)``,
    logits over every position), tokenised as Cherry LLM's ``data_analysis.py`` does — the
    whole text encoded at once, the response starting at ``len(encode(text[:rfind(response)]))``,
    the conditioned text cut to ``max_length`` and the direct text to
    ``max_length - prompt_tokens - 2`` (Superfiltering: plain template, ``labels=input_ids`` for
    the response alone);
(b) the ``ifd`` operator, run by the runtime exactly as a spec runs it (token-budget batches,
    length bucketing, response-only logits), without a score cache.

It prints samples/s for both, the ratio, and the largest relative IFD difference over the
samples both call valid-or-scored. The last line is machine-readable:
``ifd_speedup=<x> max_rel_diff=<y> device=<cpu|cuda>``.

    python bench/ifd.py                       # ~2 min on 2 CPU cores
    python bench/ifd.py --variant superfiltering --n 500
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from dslrun.core.settings import RunSettings
from dslrun.operators.ifd import Ifd
from dslrun.operators.lm.ifd import VARIANTS
from dslrun.runtime.data.pool_files import read_pool
from dslrun.runtime.execution.context import RunContext
from dslrun.runtime.execution.sample_runner import run_sample_op
from dslrun.runtime.models.resident import ModelPool
from dslrun.runtime.models.resolve import shared_model_dirs


def shared_data() -> Path:
    for models in shared_model_dirs():
        if (models.parent / "data").is_dir():
            return models.parent / "data"
    raise SystemExit("no shared/data folder found (set DSLRUN_SHARED_MODELS or run from the repo)")


def reference_loss(model, tok, text: str, response: str, max_length: int) -> float | None:
    """Mean response-token loss as the original scripts compute it (one plain forward pass)."""
    import torch

    ids = tok.encode(text, return_tensors="pt", truncation=True, max_length=max_length)
    start = len(tok.encode(text[:text.rfind(response)]))
    if ids.shape[1] <= max(start, 1):
        return None
    labels = ids.clone()
    labels[0, :start] = -100
    with torch.no_grad():
        return float(model(ids.to(model.device), labels=labels.to(model.device)).loss)


def reference_ifd(model, tok, prompt: str, response: str, variant: str, max_length: int) -> float | None:
    if not response:
        return None
    if variant == "cherry":
        prompt_len = len(tok.encode(prompt, truncation=True, max_length=max_length))
        if max_length - prompt_len - 2 <= 4:
            return None
        direct = reference_loss(model, tok, "### Response:" + response, response, max_length - prompt_len - 2)
        cond = reference_loss(model, tok, prompt + response, response, max_length)
        return None if direct is None or cond is None else cond / direct
    # Superfiltering: the response alone is scored with labels=input_ids
    prompt_len = len(tok.encode(prompt, truncation=True, max_length=max_length))
    direct = reference_loss(model, tok, response, response, max_length - prompt_len + 1)
    cond = reference_loss(model, tok, prompt + response, response, max_length)
    return None if direct is None or cond is None else math.exp(cond) / math.exp(direct)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="cherry")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--token-budget", type=int, default=None, help="padded tokens per forward pass")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    pool = read_pool(shared_data() / "alpagasus" / "random_9k.json", limit=args.n).table
    op = Ifd(Ifd.params_type(variant=args.variant))
    settings = RunSettings(token_budget=args.token_budget) if args.token_budget else RunSettings()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(Path(tmp), Path(tmp), cache=None, settings=settings, models=ModelPool())
        model, tok = ctx.models.causal_lm(op.params.model)  # loaded once, outside both timings
        print(f"model {op.params.model} on {model.device} ({model.dtype}), {len(pool)} samples, "
              f"variant {args.variant}, {torch.get_num_threads()} threads")
        template = VARIANTS[args.variant].template
        max_length = VARIANTS[args.variant].max_length
        prompts = [template.render(i, x) for i, x in zip(pool.column("instruction"), pool.column("input"))]

        start = time.perf_counter()
        ref = [reference_ifd(model, tok, p, o, args.variant, max_length)
               for p, o in zip(prompts, pool.column("output"), strict=True)]
        t_ref = time.perf_counter() - start

        start = time.perf_counter()
        ours = run_sample_op(op, pool, ctx).column("ifd")
        t_op = time.perf_counter() - start

    device = "cuda" if model.device.type == "cuda" else "cpu"
    pairs = [(a, b) for a, b in zip(ref, ours, strict=True) if a is not None and b is not None and not math.isnan(b)]
    rel = [abs(a - b) / abs(a) for a, b in pairs if a]
    worst = max(rel) if rel else float("nan")
    n = len(pool)
    print(f"reference loop: {t_ref:7.2f} s  {n / t_ref:7.2f} samples/s")
    print(f"ifd operator:   {t_op:7.2f} s  {n / t_op:7.2f} samples/s")
    print(f"compared {len(pairs)} scored samples; unscored: reference {sum(a is None for a in ref)}, "
          f"operator {sum(b is None or math.isnan(b) for b in ours)}")
    print(f"ifd_speedup={t_ref / t_op:.2f} max_rel_diff={worst:.2e} device={device}")


if __name__ == "__main__":
    main()
