"""Per-sample gradients of the trainable (LoRA) weights, with batch-size-1 semantics.

A sample's loss is the mean cross-entropy over its scored tokens (LESS computes its
gradients one sample at a time, ``model(**batch).loss.backward()``). Here a padded
batch is differentiated once: the batch loss is the *sum* of the per-sample losses, so
every sample's gradient is untouched by its neighbours, and the gradient of a linear
weight ``W`` (``y = x Wᵀ``) for sample ``b`` is ``Σ_t  ∂L_b/∂y[b,t] ⊗ x[b,t]`` — the
captured output gradients times the captured inputs, one ``einsum`` per LoRA matrix
(the Opacus / "ghost" trick; ``torch.func.vmap`` over a transformers 5 model stops at
data-dependent control flow in its attention-mask code, and this needs no functional
transform at all). Rows are padded on the right, so under causal attention
a padding token never influences a real one and its output gradient is exactly zero.

:func:`loop_gradients` is the plain reference: one backward per sample, reading
``p.grad`` (what LESS does); tests and ``bench/gradients.py`` compare the two.

Vectors concatenate the trainable parameters in ``model.named_parameters()`` order,
the order LESS uses for gradients and optimizer moments alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .encode import Encoded


def trainable(model: Any) -> list[tuple[str, Any]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def n_trainable(model: Any) -> int:
    return sum(p.numel() for _, p in trainable(model))


def _batch(encoded: Sequence[Encoded], pad_id: int, device: Any):
    import torch

    width = max(len(e.ids) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.zeros((len(encoded), width), dtype=torch.bool)
    for r, e in enumerate(encoded):
        ids[r, :len(e.ids)] = torch.tensor(e.ids, dtype=torch.long)
        mask[r, :len(e.ids)] = 1
        labels[r, :len(e.ids)] = torch.tensor(e.labels, dtype=torch.bool)
    return ids.to(device), mask.to(device), labels.to(device)


def _body_and_head(model: Any) -> tuple[Any, Any] | None:
    """The decoder body and the vocabulary projection, when logits are just ``head(hidden)``.

    Projecting only the scored positions saves most of the largest tensor of the pass
    (positions × vocabulary). Models that rescale or soft-cap their logits keep the full path.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    body, head, cfg = getattr(base, "base_model", None), base.get_output_embeddings(), base.config
    if body is None or body is base or head is None:
        return None
    if any(getattr(cfg, a, None) for a in ("final_logit_softcapping", "logit_scale", "logits_scaling")):
        return None
    return body, head


def per_sample_losses(model: Any, encoded: Sequence[Encoded], pad_id: int):
    """Mean scored-token cross-entropy of each row (float32), from one forward pass."""
    import torch

    device = next(model.parameters()).device
    ids, mask, labels = _batch(encoded, pad_id, device)
    target, scored = ids[:, 1:], labels[:, 1:]
    rows, cols = scored.nonzero(as_tuple=True)
    parts = _body_and_head(model)
    if parts is not None:
        hidden = parts[0](input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        logits = parts[1](hidden[rows, cols])
    else:
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[rows, cols]
    lp = logits.float().log_softmax(-1).gather(-1, target[rows, cols][:, None]).squeeze(-1)
    sums = torch.zeros(len(encoded), dtype=torch.float32, device=device).index_add(0, rows, -lp)
    counts = scored.sum(1).clamp(min=1).float()
    return sums / counts


def _linear_modules(model: Any) -> list[Any]:
    """The Linear module owning each trainable parameter, in parameter order."""
    import torch

    owner = {id(m.weight): m for m in model.modules() if isinstance(m, torch.nn.Linear)}
    mods = []
    for name, p in trainable(model):
        mod = owner.get(id(p))
        if mod is None or mod.bias is not None and mod.bias.requires_grad:
            raise ValueError(f"per-sample gradients need trainable weights of bias-free Linear layers "
                             f"(LoRA A/B); {name} is not one")
        mods.append(mod)
    return mods


def batched_gradients(model: Any, encoded: Sequence[Encoded], pad_id: int):
    """(B × P) float32 per-sample gradients from one forward and one backward pass."""
    import torch

    mods = _linear_modules(model)
    inputs: dict[int, Any] = {}
    grads: dict[int, Any] = {}

    def forward_hook(mod, args, out):
        key = id(mod)
        if key in inputs:
            raise RuntimeError("a LoRA layer ran twice in one forward pass; per-sample gradients need one call")
        inputs[key] = args[0].detach()
        out.register_hook(lambda g: grads.__setitem__(key, g.detach()))

    handles = [m.register_forward_hook(forward_hook) for m in mods]
    try:
        losses = per_sample_losses(model, encoded, pad_id)
        params = [p for _, p in trainable(model)]
        torch.autograd.grad(losses.sum(), params, allow_unused=True)  # fires the output hooks; the summed grads are not needed
    finally:
        for h in handles:
            h.remove()
    parts = []
    for m in mods:
        if id(m) not in grads:  # no scored token reached this layer: a zero gradient
            parts.append(torch.zeros(len(encoded), m.weight.numel(), device=m.weight.device))
        else:
            parts.append(torch.einsum("bto,bti->boi", grads[id(m)].float(), inputs[id(m)].float()).flatten(1))
    return torch.cat(parts, dim=1)


def loop_gradients(model: Any, encoded: Sequence[Encoded], pad_id: int):
    """Reference: one forward and backward per sample, gradients read from ``p.grad``."""
    import torch

    params = [p for _, p in trainable(model)]
    rows = []
    for e in encoded:
        loss = per_sample_losses(model, [e], pad_id)[0]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).float().flatten()
                               for p, g in zip(params, grads)]))
    return torch.stack(rows)


def adam_precondition(g: Any, exp_avg: Any, exp_avg_sq: Any, beta1: float = 0.9, beta2: float = 0.999,
                      eps: float = 1e-8):
    """LESS's Adam gradient: one more Adam step's moments, ``m' / sqrt(v' + eps)``, no bias correction."""
    import torch

    m = beta1 * exp_avg + (1 - beta1) * g
    v = beta2 * exp_avg_sq + (1 - beta2) * g * g
    return m / torch.sqrt(v + eps)
