"""dslrun.runtime.api — run LLM API calls concurrently within rate limits and a budget.

    from dslrun.runtime.api import ApiPool, ApiRequest, OpenAIBackend

    backend = OpenAIBackend("gpt-4o-mini", api_key_env="OPENAI_API_KEY", temperature=0)
    pool = ApiPool.for_backend(backend, rpm=500, tpm=200_000, max_concurrency=32,
                               max_cost=5.0, price=Price(0.15, 0.60))
    summary = await pool.run(requests, backend, on_result=cache.put, parse=parse_score)

Modules: ``limits`` (token buckets, per-endpoint registry), ``pool`` (the runner),
``backends`` (Backend protocol, OpenAIBackend), ``types`` (requests, replies, results).
Importing this package imports neither ``openai`` nor ``torch``.
"""

from dslrun.runtime.api.backends import (
    Backend,
    MissingCredentialError,
    OpenAIBackend,
    parse_retry_after,
)
from dslrun.runtime.api.budget import estimate_input_tokens
from dslrun.runtime.api.dispatch import ApiPool, ResultCallbackError
from dslrun.runtime.api.limits import RateLimiter, TokenBucket, endpoint_key, limiter_for
from dslrun.runtime.api.types import (
    ApiRequest,
    ApiResult,
    CallError,
    Price,
    PriceTable,
    Reply,
    RetryPolicy,
    RunSummary,
)

__all__ = [
    "ApiPool", "ApiRequest", "ApiResult", "Backend", "CallError", "MissingCredentialError",
    "OpenAIBackend", "Price", "PriceTable", "RateLimiter", "Reply", "ResultCallbackError",
    "RetryPolicy", "RunSummary", "TokenBucket", "endpoint_key", "estimate_input_tokens",
    "limiter_for", "parse_retry_after",
]
