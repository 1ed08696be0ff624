"""A backend and an API pool from an LLM step's settings (``LlmParams``): the one place that
turns ``backend``, ``base_url``, ``rpm``, ``price`` … into objects, for the LLM operators and
for ``evaluate``'s judge alike."""

from __future__ import annotations

from typing import Any

from dslrun.runtime.api.dispatch import ApiPool
from dslrun.runtime.api.types import Price, RetryPolicy


def backend_for(p: Any, model_name: str, models: Any, api_key_env: str | None) -> Any:
    """``p``: an ``LlmParams``; ``models``: the run's model pool (for ``backend: local``)."""
    if p.backend == "local":
        from dslrun.runtime.api.local import LocalChatBackend, micro_batch

        model, tokenizer = models.causal_lm(model_name, device=p.device, dtype=p.dtype)
        return LocalChatBackend(model, tokenizer, name=model_name, max_batch=micro_batch(model, p.concurrency))
    from dslrun.runtime.api.backends import OpenAIBackend

    return OpenAIBackend(model_name, base_url=p.base_url, api_key_env=api_key_env, timeout=p.timeout)


def pool_for(p: Any, backend: Any) -> ApiPool:
    retry = RetryPolicy(max_attempts=p.max_attempts)
    if p.backend == "local":
        # Generation is serialised in the backend: a per-attempt timeout would count the
        # queue, and nothing is paid for.
        return ApiPool(max_concurrency=p.concurrency, retry=retry, max_calls=p.max_calls)
    price = Price(p.price["input"], p.price["output"]) if p.price else None
    return ApiPool.for_backend(backend, rpm=p.rpm, tpm=p.tpm, max_concurrency=p.concurrency, retry=retry,
                               max_calls=p.max_calls, max_cost=p.max_cost, price=price, attempt_timeout=p.timeout)
