"""Benchmark: IFD with the real SmolLM2-135M, one sample at a time vs length-sorted batches.

1. one-by-one: every sample's two sequences scored alone, in pool order (what the
   original Cherry / Superfiltering scripts do);
2. batched: samples sorted by token length, ``--batch-size`` samples per forward pass
   (both sequences of a sample in the same batch) — the packing the runtime will do.
   Both must give the same IFD (max |Δ| is printed), and the tokens/s of each.
3. sanity (``--sanity``, on by default): mean IFD of ``--n`` samples of Cherry LLM's
   published 5% Alpaca selection vs ``--n`` random Alpaca samples. The selection was made
   with a 7B model, so a small model agreeing only shows up as a higher mean.

Data: ``shared/data/alpagasus/random_9k.json`` and ``shared/data/cherry_llm/
cherry_alpaca_5_percent.json`` (see shared/data/README.md). The last line is
``ifd_speedup=<one-by-one/batched time> max_ifd_diff=<x> tok_per_s=<batched>
cherry_mean_ifd=<x> random_mean_ifd=<x>``.

    python bench/ifd.py                 # ~1 min on 2 CPU cores
    python bench/ifd.py --n 64 --dtype bf16 --variant superfiltering
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from dslrun.operators.lm import ifd_scores
from dslrun.operators.lm.ifd import VARIANTS
from dslrun.runtime.models import load_causal_lm, resolve_model
from dslrun.runtime.models.resolve import shared_model_dirs


def shared_data() -> Path:
    for models in shared_model_dirs():
        if (models.parent / "data").is_dir():
            return models.parent / "data"
    raise SystemExit("no shared/data folder found (set DSLRUN_SHARED_MODELS or run from the repo)")


def load_pool(path: Path, n: int, template) -> tuple[list[str], list[str]]:
    rows = json.loads(path.read_text())[:n]
    return [template.render(r["instruction"], r.get("input", "")) for r in rows], [r["output"] for r in rows]


def batched(model, tok, prompts, outputs, args) -> tuple[list, float]:
    """Length-sorted batches; results put back in pool order."""
    lengths = [len(tok(p + o, add_special_tokens=False)["input_ids"]) for p, o in zip(prompts, outputs, strict=True)]
    order = sorted(range(len(prompts)), key=lengths.__getitem__)
    out: list = [None] * len(prompts)
    start = time.perf_counter()
    for k in range(0, len(order), args.batch_size):
        idx = order[k:k + args.batch_size]
        scores = ifd_scores(model, tok, [prompts[i] for i in idx], [outputs[i] for i in idx],
                            variant=args.variant, max_length=args.max_length)
        for i, s in zip(idx, scores, strict=True):
            out[i] = s
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--cache-dir", default=os.environ.get("DSLRUN_CACHE", str(Path.home() / ".cache" / "dslrun")))
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="cherry")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=None)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--no-sanity", dest="sanity", action="store_false")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    resolved = resolve_model(args.model, "causal-lm", args.cache_dir)
    model, tok = load_causal_lm(resolved, dtype=args.dtype)
    print(f"model {resolved.name} from {resolved.source} ({resolved.identity[:24]}…) "
          f"on {model.device}, {model.dtype}; variant {args.variant}")
    template = VARIANTS[args.variant].template
    data = shared_data()
    prompts, outputs = load_pool(data / "alpagasus" / "random_9k.json", args.n, template)

    start = time.perf_counter()
    single = [ifd_scores(model, tok, [p], [o], variant=args.variant, max_length=args.max_length)[0]
              for p, o in zip(prompts, outputs, strict=True)]
    t_single = time.perf_counter() - start
    many, t_batched = batched(model, tok, prompts, outputs, args)
    tokens = sum(s.n_conditioned + s.n_direct for s in single)  # scored tokens; contexts cost too
    diffs = [abs(a.ifd - b.ifd) for a, b in zip(single, many, strict=True) if a.ifd is not None]
    assert [a.reason is None for a in single] == [b.reason is None for b in many]
    print(f"one-by-one: {t_single:6.1f} s  ({tokens / t_single:6.0f} scored tok/s)")
    print(f"batched:    {t_batched:6.1f} s  ({tokens / t_batched:6.0f} scored tok/s, batch {args.batch_size}, length-sorted)")
    valid = sum(s.reason is None for s in many)
    print(f"valid {valid}/{len(many)}; reasons: {sorted({s.reason for s in many if s.reason})}")
    cherry_mean = random_mean = float("nan")
    if args.sanity:
        cp, co = load_pool(data / "cherry_llm" / "cherry_alpaca_5_percent.json", args.n, template)
        cherry, _ = batched(model, tok, cp, co, args)

        def mean_ifd(scores):
            vals = [s.ifd for s in scores if s.ifd is not None]
            return sum(vals) / len(vals)

        cherry_mean, random_mean = mean_ifd(cherry), mean_ifd(many)
        print(f"mean IFD: Cherry 5% selection {cherry_mean:.4f}, random Alpaca {random_mean:.4f}")
    print(f"ifd_speedup={t_single / t_batched:.2f} max_ifd_diff={max(diffs):.2e} "
          f"tok_per_s={tokens / t_batched:.0f} cherry_mean_ifd={cherry_mean:.4f} "
          f"random_mean_ifd={random_mean:.4f}")


if __name__ == "__main__":
    main()
