"""A backend and an API pool from an LLM step's settings (``LlmParams``): the one place that
turns ``backend``, ``base_url``, ``rpm``, ``price`` … into objects, for the LLM operators and
for ``evaluate``'s judge alike."""

from __future__ import annotations

from typing import Any

from dslrun.runtime.api.dispatch import ApiPool
from dslrun.runtime.api.endpoints import default_rpm, price_for
from dslrun.runtime.api.timeouts import AttemptTimeouts, is_loopback
from dslrun.runtime.api.types import RetryPolicy

LOCAL_CONCURRENCY = 16  # calls queued for an in-process model (it batches at most 16)
SERVER_CEILING = 64  # the adaptive limit's ceiling for a server when the step sets no `concurrency`
REMOTE_CLIENT_TIMEOUT = 900.0  # the HTTP client's own limit; the pool's attempt timeout comes first


def backend_for(p: Any, model_name: str, models: Any, api_key_env: str | None) -> Any:
    """``p``: an ``LlmParams``; ``models``: the run's model pool (for ``backend: local``)."""
    if p.backend == "local":
        from dslrun.runtime.api.local import LocalChatBackend, micro_batch

        model, tokenizer = models.causal_lm(model_name, device=p.device, dtype=p.dtype)
        return LocalChatBackend(model, tokenizer, name=model_name,
                                max_batch=micro_batch(model, p.concurrency or LOCAL_CONCURRENCY))
    from dslrun.runtime.api.backends import OpenAIBackend, resolve_base_url

    url = resolve_base_url(p.base_url)[0]
    # A loopback server gets no client timeout either: a slow reply is still coming (timeouts.py).
    client_timeout = p.timeout if p.timeout is not None else None if is_loopback(url) else REMOTE_CLIENT_TIMEOUT
    # env_vars() names the key variable of every openai step; a caller without one gets the usual.
    return OpenAIBackend(model_name, base_url=p.base_url, api_key_env=api_key_env or "OPENAI_API_KEY",
                         timeout=client_timeout)


def pool_for(p: Any, backend: Any) -> ApiPool:
    retry = RetryPolicy(max_attempts=p.max_attempts)
    if p.backend == "local":
        # Generation is serialised in the backend: a per-attempt timeout would count the
        # queue, and nothing is paid for.
        return ApiPool(max_concurrency=p.concurrency or LOCAL_CONCURRENCY, retry=retry, max_calls=p.max_calls)
    url = backend.base_url
    price = price_for(url, backend.model, p.price)
    return ApiPool.for_backend(backend, rpm=default_rpm(url, p.rpm), tpm=p.tpm, retry=retry,
                               max_concurrency=p.concurrency or SERVER_CEILING, adaptive=True,
                               timeouts=AttemptTimeouts.for_endpoint(url, p.timeout), max_calls=p.max_calls,
                               max_cost=p.max_cost, price=price)
