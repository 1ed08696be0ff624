"""Model resolution and loading for model operators.

``resolve_model(spec, kind, cache_dir)`` turns a spec's model name (path, ``.gguf``,
alias or hub id) into a :class:`ResolvedModel` — a local folder plus a content
``identity`` for cache keys — without importing torch. ``load_causal_lm`` and
``load_sentence_encoder`` load it (torch / transformers imported on call).
"""

from __future__ import annotations

from typing import Any

from .resolve import ALIASES, ModelResolutionError, ResolvedModel, resolve_model

__all__ = [
    "ALIASES",
    "ModelResolutionError",
    "ResolvedModel",
    "load_causal_lm",
    "load_reward_model",
    "load_sentence_encoder",
    "pick_device",
    "pick_dtype",
    "resolve_model",
]


def pick_device(device: str = "auto") -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; anything else passes through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(dtype: Any, device: str) -> Any:
    """``auto`` → bf16 on a GPU, fp32 on a CPU; a name (``bf16``, ``float32``, …) → its torch dtype."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if isinstance(dtype, str):
        names = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32"}
        value = getattr(torch, names.get(dtype, dtype), None)
        if not isinstance(value, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}")
        return value
    return dtype


def load_causal_lm(resolved: ResolvedModel, device: str = "auto", dtype: Any = "auto"):
    """Load a resolved causal LM → ``(model, tokenizer)``, in eval mode with SDPA attention.

    device ``auto``: CUDA if available, else CPU. dtype ``auto``: bf16 on GPU, fp32 on CPU.
    The tokenizer gets a pad token (its EOS) when it has none.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = pick_device(device)
    model = AutoModelForCausalLM.from_pretrained(
        str(resolved.path), dtype=pick_dtype(dtype, dev), attn_implementation="sdpa")
    # transformers wraps this .to() in a decorator typed as taking the model, not a device
    # (other versions may type it right, hence unused-ignore too).
    model.to(dev)  # type: ignore[arg-type, unused-ignore]
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(resolved.path))
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_reward_model(resolved: ResolvedModel, device: str = "auto", dtype: Any = "auto"):
    """Load a resolved reward model (a sequence classifier) → ``(model, tokenizer)``, in eval mode."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    dev = pick_device(device)
    model = AutoModelForSequenceClassification.from_pretrained(str(resolved.path), dtype=pick_dtype(dtype, dev))
    model.to(dev)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(resolved.path))
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:  # decoder classifiers find the last real token by it
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_sentence_encoder(resolved: ResolvedModel, device: str = "auto"):
    """Load a resolved sentence encoder as a ``SentenceTransformer`` on the chosen device."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(resolved.path), device=pick_device(device))
