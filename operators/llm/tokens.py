"""Counting a chat request's input tokens for ``dslrun plan``.

Local backend: the model's own tokenizer and chat template (exact). OpenAI-compatible
servers: ``tiktoken`` when it is installed and its encoding is on disk (exact for
OpenAI models), else 4 characters a token plus the chat format's few tokens per
message (close for English; the real counts settle the run's budget anyway).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Counter = Callable[[list[dict[str, str]]], int]
PER_MESSAGE, PER_REQUEST = 4, 3  # OpenAI's chat format overhead


def _chars(messages: list[dict[str, str]]) -> int:
    return sum(len(m.get("content", "")) for m in messages) // 4 + PER_MESSAGE * len(messages) + PER_REQUEST


def _tiktoken(model: str) -> Counter | None:
    try:
        import tiktoken

        enc = tiktoken.encoding_for_model(model)
    except Exception:  # not installed, unknown model, or no network to fetch the encoding
        return None
    return lambda msgs: sum(len(enc.encode(m.get("content", ""))) + PER_MESSAGE for m in msgs) + PER_REQUEST


def _local(op: Any) -> Counter:
    from transformers import AutoTokenizer

    from dslrun.runtime.models.resident import resolve

    tok = AutoTokenizer.from_pretrained(str(resolve(op.model_name, "causal-lm").path))
    raw = bool(op.request_options().get("raw")) or not getattr(tok, "chat_template", None)

    def count(msgs: list[dict[str, str]]) -> int:
        if raw:
            return len(tok("\n\n".join(m.get("content", "") for m in msgs))["input_ids"])
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return len(tok(text, add_special_tokens=False)["input_ids"])

    return count


def token_counter(op: Any) -> Counter:
    if op.llm.backend == "local":
        return _local(op)
    return _tiktoken(op.model_name) or _chars
