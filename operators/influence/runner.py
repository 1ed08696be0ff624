"""One ``gradient-sim`` step's model state: the LoRA model, its checkpoints, and feature extraction.

Features are computed checkpoint by checkpoint on groups of samples small enough that
their full per-sample gradients fit in ``grad_memory`` bytes (setting; default 2 GiB);
all checkpoints' gradients of a group are projected together, so the projection matrix
is generated once per group rather than once per checkpoint (``projector: trak`` too:
LESS projects every checkpoint with the same matrix, ``model_id=0``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .encode import TULU, Encoded, encode_samples
from .grads import adam_precondition, batched_gradients, n_trainable
from .project import features as project_features
from .warmup import (
    Checkpoint,
    WarmupConfig,
    load_checkpoints,
    load_state,
    lora_model,
    micro_batches,
    train,
    warmup_key,
    warmup_subset,
)

log = logging.getLogger("dslrun.gradient_sim")


class Runner:
    def __init__(self, p: Any, ctx: Any, root: Path):
        from dslrun.runtime.models.resident import identity

        self.p, self.ctx, self.root = p, ctx, root
        self.identity = identity(p.model, "causal-lm")
        self._loaded_model: tuple[Any, Any] | None = None
        self._template: Any = None
        self.cfg = WarmupConfig(r=p.r, alpha=p.alpha, dropout=p.dropout, target_modules=tuple(p.target_modules),
                                epochs=p.epochs, lr=p.lr, warmup_ratio=p.warmup_ratio, grad_accum=p.grad_accum,
                                max_grad_norm=p.max_grad_norm, seed=p.seed,
                                extra={"template": _template_id(p.template), "max_length": p.max_length,
                                       "dtype": p.dtype})
        self._model: Any = None
        self.key = ""
        self.checkpoints: list[Checkpoint] = []
        self._loaded: tuple[int, Any, Any] | None = None
        self._projector_key: str | None = None
        self._trak: Any = None

    # The model loads only when something is computed: a fully cached re-run loads nothing.
    @property
    def tokenizer(self) -> Any:
        return self._base()[1]

    def _base(self) -> tuple[Any, Any]:
        if self._loaded_model is None:
            p = self.p
            self._loaded_model = self.ctx.models.causal_lm(p.model, device=p.device, dtype=p.dtype)
        return self._loaded_model

    @property
    def model(self) -> Any:
        """The LoRA copy of the shared base model (built once, checkpoints loaded into it)."""
        if self._model is None:
            self._model = lora_model(self._base()[0], self.cfg)
        return self._model

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return int(pad or 0)

    @property
    def projector_key(self) -> str:
        """``dslrun`` (one matrix on every device), or TRAK's version, device kind and dtype:
        LESS projects on its model's device in its model's dtype, and both change the features."""
        if self._projector_key is None:
            self._projector_key = "dslrun"
            if self.p.projector == "trak":
                from dslrun.runtime.models import pick_device, pick_dtype

                from .trak_projection import trak_key

                device = pick_device(self.p.device)
                self._projector_key = trak_key(device, dtype_name(pick_dtype(self.p.dtype, device)))
        return self._projector_key

    def project(self, grads: Any) -> Any:
        """(B × P) float16 gradients → (B × dim) L2-normalised features."""
        if self.p.projector != "trak":
            return project_features(grads, self.p.dim, self.p.projection_seed)
        dtype = self._base()[0].dtype
        if not self.projector_key.endswith(":" + dtype_name(dtype)):  # the key must name what computes
            raise RuntimeError(f"the model loaded in {dtype}, not as keyed ({self.projector_key})")
        if self._trak is None:
            from .trak_projection import TrakProjector

            self._trak = TrakProjector(self.p.dim, self.p.projection_seed, dtype)
        return self._trak(grads)

    def encode(self, conversations: list) -> list[Encoded]:
        if self._template is None:
            self._template = TULU
            if self.p.template != TULU:
                from dslrun.operators.lm.templates import get_template

                self._template = get_template(self.p.template, self.tokenizer)
        return encode_samples(self.tokenizer, conversations, self._template, self.p.max_length)

    def warmup_samples(self, table: Any) -> tuple[list[str], Path]:
        """The warm-up's sample ids (LESS's seeded subset of the distinct samples) and its folder."""
        ids = list(dict.fromkeys(table.ids))
        chosen = [ids[i] for i in warmup_subset(len(ids), self.p.warmup_fraction, self.p.seed)]
        if int(len(ids) * self.p.warmup_fraction) < 1 and self.ctx is not None:
            self.ctx.stats.warnings.append(
                f"`warmup_fraction: {self.p.warmup_fraction:g}` of {len(ids)} samples rounds down to 0: "
                f"the warm-up trains on {len(chosen)} sample; raise `warmup_fraction` or give it more samples")
        self.key = warmup_key(self.identity, chosen, self.cfg)
        return chosen, self.root / "warmup" / self.key

    def warm_up(self, table: Any) -> None:
        """Train (or find) the warm-up checkpoints for this pool."""
        first = {sid: i for i, sid in reversed(list(enumerate(table.ids)))}
        chosen, folder = self.warmup_samples(table)
        found = load_checkpoints(folder)
        if found is not None:
            self.ctx.stats.notes.append(f"warm-up {self.key}: {len(found)} checkpoints reused from {folder}")
            self.checkpoints = found
            return
        messages = table.column("messages")
        encoded = [e for e in self.encode([messages[first[sid]] for sid in chosen]) if e.n_labels > 0]
        if not encoded:
            raise ValueError("no warm-up sample has a response token within max_length")
        task = None
        if self.ctx.progress is not None:
            task = self.ctx.progress.task(f"{self.ctx.node} warm-up", len(encoded) * self.cfg.epochs)
        log.info("warm-up %s: LoRA r=%d on %d samples × %d epochs", self.key, self.cfg.r, len(encoded),
                 self.cfg.epochs)
        self.checkpoints = train(self.model, encoded, self.cfg, folder, self.pad_id,
                                 progress=task.advance if task is not None else None)
        if task is not None:
            task.done()
        self.ctx.stats.notes.append(f"warm-up {self.key}: trained on {len(encoded)} samples, "
                                    f"{len(self.checkpoints)} checkpoints in {folder}")

    def _checkpoint(self, k: int) -> tuple[Any, Any]:
        if self._loaded is None or self._loaded[0] != k:
            m, v = load_state(self.model, self.checkpoints[k])
            self._loaded = (k, m, v)
        return self._loaded[1], self._loaded[2]

    def features(self, conversations: list, kind: str, ctx: Any) -> list[np.ndarray | None]:
        """(K × dim) features per conversation (None when nothing is scored): float16, or
        float32 for ``projector: trak`` (its values exactly, whatever its dtype)."""
        import torch

        encoded = self.encode(conversations)
        out: list[np.ndarray | None] = [None] * len(encoded)
        valid = [i for i, e in enumerate(encoded) if e.n_labels > 0]
        k_ckpt = len(self.checkpoints)
        per_sample = n_trainable(self.model) * 2 * k_ckpt  # float16 gradients of every checkpoint
        group_size = max(1, ctx.settings.grad_memory // per_sample)
        budget = ctx.settings.grad_token_budget
        self.model.eval()  # LESS takes gradients without dropout
        for g0 in range(0, len(valid), group_size):
            group = valid[g0:g0 + group_size]
            rows = []
            for k in range(k_ckpt):
                m, v = self._checkpoint(k)
                grads = torch.zeros(len(group), m.numel(), dtype=torch.float16, device=m.device)
                by_length = sorted(range(len(group)), key=lambda j: len(encoded[group[j]].ids))  # little padding
                for mb in micro_batches([encoded[i] for i in group], by_length, budget):
                    g = batched_gradients(self.model, [encoded[group[i]] for i in mb], self.pad_id)
                    if kind == "adam":
                        g = adam_precondition(g, m, v)
                    grads[mb] = g.to(torch.float16)
                rows.append(grads)
            feats = self.project(torch.cat(rows))
            feats = feats.reshape(k_ckpt, len(group), self.p.dim).transpose(0, 1)
            stored = feats.to(torch.float32 if self.p.projector == "trak" else torch.float16).cpu().numpy()
            for j, i in enumerate(group):
                out[i] = stored[j]
        return out


def _template_id(template: str) -> str:
    from dslrun.operators.gradient_sim import template_key

    return template_key(template)


def dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")
