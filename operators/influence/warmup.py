"""LESS's warm-up: LoRA-tune the model on a small random slice of the pool, keep every epoch.

Follows ``less/train/train.py`` with ``less/scripts/train/base_training_args.sh``:
LoRA (peft, task CAUSAL_LM) with r 128, alpha 512, dropout 0.1 on q/k/v/o; AdamW
(β 0.9/0.999, ε 1e-8, no weight decay), learning rate 2e-5 with a linear schedule and
3% warm-up steps, 4 epochs, batch size 1 with 32 accumulation steps (each optimizer step
averages the per-sample mean losses of its samples), gradient norm clipped at 1.0 (the
Trainer's default, which LESS keeps). The subset is LESS's: ``int(fraction · N)``
samples, the first of a seeded permutation of the pool. Samples are shuffled every epoch
(seeded); the last accumulation of an epoch may hold fewer than 32 samples.

Each epoch's end is a checkpoint: the adapter weights and Adam's ``exp_avg`` /
``exp_avg_sq`` for every LoRA parameter, plus the epoch's average learning rate (LESS
weights checkpoints by it). A run is stored under one key — model identity, the
ordered warm-up sample ids and every hyper-parameter — and written atomically, so
re-running never trains again, and a killed run leaves nothing half-written.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .encode import Encoded
from .grads import per_sample_losses, trainable

FORMAT = "1"  # bump when the stored layout or the training loop changes


@dataclass(frozen=True)
class WarmupConfig:
    r: int = 128
    alpha: int = 512
    dropout: float = 0.1
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    epochs: int = 4
    lr: float = 2e-5
    warmup_ratio: float = 0.03
    grad_accum: int = 32
    max_grad_norm: float = 1.0
    seed: int = 0
    token_budget: int = 4096  # padded tokens per micro-batch; changes speed, not results
    extra: dict[str, Any] = field(default_factory=dict)  # template, max_length: part of the key

    def key_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("token_budget")
        d["target_modules"] = list(self.target_modules)
        return d


@dataclass(frozen=True)
class Checkpoint:
    epoch: int
    avg_lr: float
    path: Path


def warmup_subset(n: int, fraction: float, seed: int) -> list[int]:
    """LESS's ``load_raw_dataset``: the first ``int(fraction·n)`` of a seeded permutation (≥ 1)."""
    size = max(1, int(n * fraction))
    if size >= n:
        return list(range(n))
    return [int(i) for i in np.random.RandomState(seed).permutation(n)[:size]]


def warmup_key(model_identity: str, sample_ids: Sequence[str], cfg: WarmupConfig) -> str:
    payload = json.dumps({"format": FORMAT, "model": model_identity, "samples": list(sample_ids),
                          "config": cfg.key_dict()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def lora_model(base: Any, cfg: WarmupConfig) -> Any:
    """A trainable LoRA copy of *base* (the shared model is left untouched)."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model

    torch.manual_seed(cfg.seed)  # LoRA A's initialisation
    config = LoraConfig(task_type=TaskType.CAUSAL_LM, inference_mode=False, r=cfg.r, lora_alpha=cfg.alpha,
                        lora_dropout=cfg.dropout, target_modules=list(cfg.target_modules))
    try:
        return get_peft_model(copy.deepcopy(base), config)
    except ValueError as e:  # e.g. "Target modules {...} not found in the base model"
        raise ValueError(f"LoRA target modules {list(cfg.target_modules)} do not fit this model: {e}") from None


def linear_schedule(step: int, total: int, warmup: int) -> float:
    """transformers' ``get_linear_schedule_with_warmup`` multiplier at *step*."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def micro_batches(encoded: Sequence[Encoded], order: Sequence[int], budget: int) -> list[list[int]]:
    groups: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        w = max(width, len(encoded[i].ids))
        if current and w * (len(current) + 1) > budget:
            groups.append(current)
            current, w = [], len(encoded[i].ids)
        current.append(i)
        width = w
    if current:
        groups.append(current)
    return groups


def load_checkpoints(folder: Path) -> list[Checkpoint] | None:
    done = folder / "done.json"
    if not done.exists():
        return None
    meta = json.loads(done.read_text())
    return [Checkpoint(c["epoch"], c["avg_lr"], folder / c["file"]) for c in meta["checkpoints"]]


def train(model: Any, encoded: Sequence[Encoded], cfg: WarmupConfig, folder: Path, pad_id: int,
          progress: Any = None) -> list[Checkpoint]:
    """Train *model* (a peft LoRA model) and store one checkpoint per epoch in *folder*."""
    import torch

    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names, params = zip(*trainable(model))
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    n = len(encoded)
    steps_per_epoch = math.ceil(n / cfg.grad_accum)
    total = steps_per_epoch * cfg.epochs
    warm = math.ceil(total * cfg.warmup_ratio)
    step = 0
    torch.manual_seed(cfg.seed)  # LoRA dropout
    model.train()
    metas = []
    for epoch in range(1, cfg.epochs + 1):
        order = np.random.RandomState(cfg.seed + epoch).permutation(n)
        lrs = []
        for s in range(0, n, cfg.grad_accum):
            chunk = [int(i) for i in order[s:s + cfg.grad_accum]]
            lr = cfg.lr * linear_schedule(step, total, warm)
            for group in opt.param_groups:
                group["lr"] = lr
            for mb in micro_batches(encoded, chunk, cfg.token_budget):
                loss = per_sample_losses(model, [encoded[i] for i in mb], pad_id).sum() / len(chunk)
                loss.backward()
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            lrs.append(lr)
            step += 1
            if progress is not None:
                progress(len(chunk))
        state = {}
        for name, p in zip(names, params):
            st = opt.state[p]
            state[name] = p.detach().cpu().clone()
            state[name + "::exp_avg"] = st["exp_avg"].detach().cpu().clone()
            state[name + "::exp_avg_sq"] = st["exp_avg_sq"].detach().cpu().clone()
        file = f"epoch-{epoch}.pt"
        torch.save(state, tmp / file)
        metas.append({"epoch": epoch, "avg_lr": float(np.mean(lrs)), "file": file, "steps": step})
    model.eval()
    (tmp / "done.json").write_text(json.dumps({"format": FORMAT, "config": cfg.key_dict(),
                                               "checkpoints": metas}, indent=1))
    if folder.exists():  # another process finished first: keep its result
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(folder)
    found = load_checkpoints(folder)
    assert found is not None
    return found


def load_state(model: Any, ckpt: Checkpoint) -> tuple[Any, Any]:
    """Put a checkpoint's adapter weights into *model*; return its flat (exp_avg, exp_avg_sq)."""
    import torch

    state = torch.load(ckpt.path, map_location="cpu", weights_only=True)
    ms, vs = [], []
    with torch.no_grad():
        for name, p in trainable(model):
            if name not in state:
                raise ValueError(f"checkpoint {ckpt.path} has no weights for {name}")
            p.copy_(state[name].to(p.dtype))
            ms.append(state[name + "::exp_avg"].float().flatten())
            vs.append(state[name + "::exp_avg_sq"].float().flatten())
    device = next(model.parameters()).device
    return torch.cat(ms).to(device), torch.cat(vs).to(device)
