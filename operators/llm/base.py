"""``LlmOperator``: a per-sample operator whose values come from chat calls.

The operator says which messages to send for a sample and how to read a reply; the
runtime (``runtime/execution/llm_runner.py``) sends them through the API pool, caches every reply
the moment it arrives, and records a reason for every sample it could not score.
Backend settings are shared by every LLM operator through ``LlmParams``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import Field, field_validator

from dslrun.core.cost import Cost, Feasibility, Resource
from dslrun.core.params import EnvVar, NoCache, Params
from dslrun.operators.base import CachedOperator

if TYPE_CHECKING:
    from dslrun.core.context import RunContext
    from dslrun.runtime.api import ApiResult, Reply

DEFAULT_MODEL = {"openai": "gpt-4o-mini", "local": "smollm2-135m"}
# Endpoints serving proprietary models; any other base_url is taken as a self-hosted open model.
CLOSED_API_HOSTS = ("api.openai.com", "openai.azure.com", "api.anthropic.com", "generativelanguage.googleapis.com")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class LlmParams(Params):
    backend: Literal["openai", "local"] = Field(
        "openai", description="openai: any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, Ollama) by base_url; "
                              "local: a transformers chat model in this process")
    model: str | None = Field(None, description="model name on the server, or for local a model alias, folder, "
                                                ".gguf file or hub id (default gpt-4o-mini / smollm2-135m)")
    # Where the model is served is not what it computes: endpoints and keys stay out of cache
    # keys, so the same model behind another host name or port is not paid for again.
    base_url: Annotated[str | None, NoCache()] = Field(
        None, description="server URL, e.g. http://localhost:8000/v1 (default OpenAI's)")
    api_key_env: Annotated[EnvVar | None, NoCache()] = Field(
        None, description="name of the environment variable holding the API key (default OPENAI_API_KEY); "
                          "never the key itself")
    cache_as: str | None = Field(None, description="the model's identity in cache keys when the server's model "
                                                   "name does not tell it (one name serving different models)")
    temperature: float | None = Field(None, ge=0, description="default: the template's (0 for the published judges)")
    max_tokens: int | None = Field(None, ge=1, description="default: the template's")
    seed: int | None = None
    # How, not what: kept out of cache keys.
    rpm: Annotated[float | None, NoCache()] = Field(
        None, gt=0, description="requests per minute for this endpoint (default: 500 at a known paid provider, "
                                "unlimited elsewhere)")
    tpm: Annotated[float | None, NoCache()] = Field(None, gt=0, description="tokens per minute for this endpoint")
    concurrency: Annotated[int | None, NoCache()] = Field(
        None, ge=1, description="calls in flight at most: a server's limit adapts below it (default 64); "
                                "local: calls batched together (default 16)")
    timeout: Annotated[float | None, NoCache()] = Field(
        None, gt=0, description="seconds per attempt (default: none for a loopback server, else derived from "
                                "max_tokens and the observed seconds per token, at least 30)")
    max_attempts: Annotated[int, NoCache()] = Field(6, ge=1, description="attempts per sample (retries + 1)")
    max_calls: Annotated[int | None, NoCache()] = Field(None, ge=0, description="stop after this many calls")
    max_failed_fraction: Annotated[float, NoCache()] = Field(
        0.5, ge=0, le=1, description="the run exits 1 (after saving what it got) when more than this share "
                                     "of the step's samples failed (no usable reply)")
    max_cost: Annotated[float | None, NoCache()] = Field(None, ge=0, description="stop before spending more "
                                                                                  "(needs price)")
    price: Annotated[dict[str, float] | None, NoCache()] = Field(
        None, description="{input: X, output: Y}, money per 1M tokens; prices `plan` and bounds max_cost at a known "
                          "paid provider (default: the model's list price there, if known; no cost elsewhere)")
    device: Annotated[str, NoCache()] = Field("auto", description="local backend: auto, cpu or cuda")
    dtype: Annotated[str, NoCache()] = Field("auto", description="local backend: auto (bf16 GPU, fp32 CPU)")

    @field_validator("api_key_env")
    @classmethod
    def _a_name_not_a_key(cls, v: str | None) -> str | None:
        if v is not None and not ENV_NAME.fullmatch(v):
            raise ValueError("must be the *name* of an environment variable (like OPENAI_API_KEY), "
                             "not a key; put the key in the environment: export NAME=...")
        return v

    @field_validator("price")
    @classmethod
    def _price_keys(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None and set(v) != {"input", "output"}:
            raise ValueError("price needs exactly the keys input and output (money per 1M tokens)")
        return v


def outcome_of(reason: str | None) -> str:
    """A sample's outcome from its reason column: ``ok``, ``unparsable``, ``out of scale``,
    ``failed: CAUSE`` or ``not run: CAUSE`` (the categories of the run summary)."""
    if reason is None:
        return "ok"
    if reason.startswith("unparsable"):
        return "unparsable"
    if reason.startswith("out of scale"):
        return "out of scale"
    head, _, rest = reason.partition(": ")
    if head == "not run":
        return f"not run: {rest.split(' (')[0]}"
    return f"failed: {rest.split(' (')[0] if head == 'failed' else 'other'}"


def outcome_line(outcomes: Mapping[str, int]) -> str:
    """``40 samples: 31 ok, 3 unparsable, 2 out of scale, 4 failed (timeout=3, server_error=1)``."""
    def group(prefix: str) -> str:
        parts = {k.removeprefix(prefix): n for k, n in outcomes.items() if k.startswith(prefix)}
        total = sum(parts.values())
        detail = ", ".join(f"{k}={n}" for k, n in sorted(parts.items()))
        return f"{total} {prefix.rstrip(': ')}" + (f" ({detail})" if total else "")

    parts = [f"{outcomes.get(k, 0)} {k}" for k in ("ok", "unparsable", "out of scale")]
    parts.append(group("failed: "))
    if any(k.startswith("not run") for k in outcomes):
        parts.append(group("not run: "))
    return f"{sum(outcomes.values())} samples: " + ", ".join(parts)


LP = TypeVar("LP", bound=LlmParams)


def llm_identity(p: LlmParams, model_name: str) -> str:
    """The model part of an LLM step's cache key: a local model by content, a served one by its
    name (or ``cache_as``), never by the address it is served at."""
    if p.backend == "local":
        from dslrun.runtime.models.resident import identity

        return "local:" + identity(model_name, "causal-lm")
    return f"openai:{p.cache_as or model_name}"


class LlmOperator(CachedOperator[LP]):
    """Per-sample values from one chat call each. Subclasses build the call and read the reply."""

    params_type = LlmParams
    kernels = ("dslrun.runtime.api.local",)  # the local backend's generation and logprobs

    def __init__(self, params: LP):
        super().__init__(params)
        # A local chat model shares the GPU/CPU with the other model nodes.
        self.resource = Resource.MODEL if self.llm.backend == "local" else Resource.API

    @property
    def llm(self) -> LlmParams:
        assert isinstance(self.params, LlmParams)
        return self.params

    @property
    def model_name(self) -> str:
        return self.llm.model or DEFAULT_MODEL[self.llm.backend]

    def feasibility(self) -> Feasibility:
        return Feasibility(labels=True, llm_uses=1, closed_api=self.closed_api(), model=self.model_name)

    def closed_api(self) -> bool:
        """A proprietary model's API: OpenAI's own endpoint, or a known closed provider's URL."""
        if self.llm.backend != "openai":
            return False
        url = self.endpoint_url().lower()
        return any(host in url for host in CLOSED_API_HOSTS)

    def env_vars(self) -> dict[str, str]:
        if self.llm.backend != "openai":
            return {}
        return {"api_key_env": self.llm.api_key_env or "OPENAI_API_KEY"}

    def endpoint_url(self) -> str:
        """The server this step calls (openai backend): ``base_url``, else ``$OPENAI_BASE_URL``,
        else OpenAI's."""
        return self.endpoint_source()[0]

    def endpoint_source(self) -> tuple[str, str]:
        """(URL, where it came from: base_url, $OPENAI_BASE_URL or OpenAI's default)."""
        from dslrun.runtime.api.backends import resolve_base_url

        url, source = resolve_base_url(self.llm.base_url)
        return url.rstrip("/"), source

    def model_identity(self) -> str:
        return llm_identity(self.llm, self.model_name)

    # ---------------------------------------------------------------- what subclasses define
    reason_column: str = "reason"
    sample_columns: tuple[str, ...] = ("instruction", "input", "output")  # what messages() reads

    def calls(self, sample: Mapping[str, Any]) -> list[list[dict[str, str]]] | None:
        """Several chats for one sample (one per turn, say), each cached on its own and then
        merged by :meth:`combine`; None (default): the one chat of :meth:`messages`."""
        return None

    def combine(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        """One sample's column values from the values of its :meth:`calls`, in order."""
        raise NotImplementedError

    def messages(self, sample: Mapping[str, Any]) -> list[dict[str, str]]:
        raise NotImplementedError

    def request_options(self) -> dict[str, Any]:
        """temperature / max_tokens / seed / logprobs for every call of this node."""
        raise NotImplementedError

    def parse(self, reply: Reply) -> dict[str, Any]:
        """Column values from a reply; raise (ParseError) when it does not hold them."""
        raise NotImplementedError

    def unparsed(self, reply_text: str, error: str) -> dict[str, Any]:
        """Column values for a paid reply that did not parse (kept in the cache)."""
        raise NotImplementedError

    def failed(self, reason: str) -> dict[str, Any]:
        """Column values for a sample with no usable reply (not cached: a re-run retries it)."""
        raise NotImplementedError

    def finish(self, table: Any, ctx: RunContext) -> Any:
        """Columns computed across samples from the cached per-sample ones (default: none)."""
        return table

    # ---------------------------------------------------------------- runtime glue
    def row(self, result: ApiResult) -> tuple[dict[str, Any], bool]:
        """(column values, cache them?) for one pool result."""
        if result.ok:
            extra = {"top_logprobs": result.reply.top_logprobs} if result.reply and result.reply.top_logprobs else {}
            return {**result.value, "raw": result.text, **extra}, True
        if result.reason == "parse" and result.text is not None:
            return {**self.unparsed(result.text, result.error or "unparsable"), "raw": result.text}, True
        return self.failed(result.describe()), False

    def estimate(self, n_samples: int) -> Cost:
        return Cost(samples=n_samples, api_calls=n_samples if self.resource == Resource.API else 0,
                    forward_passes=n_samples if self.resource == Resource.MODEL else 0)

    def chats(self, sample: Mapping[str, Any]) -> list[list[dict[str, str]]]:
        """Every chat a run sends for *sample*: its :meth:`calls`, else the one of :meth:`messages`."""
        calls = self.calls(sample)
        return [self.messages(sample)] if calls is None else calls

    def estimate_rows(self, table: Any, rows: list[int]) -> Cost:
        """Calls (one per chat: per turn with ``calls``), input tokens and output tokens for *rows*."""
        cols = {c: table.column(c) for c in self.sample_columns}
        chats = [chat for r in rows for chat in self.chats({c: v[r] for c, v in cols.items()})]
        return self.estimate_chats(len(rows), chats)

    def estimate_chats(self, n_samples: int, chats: list[list[dict[str, str]]]) -> Cost:
        """The cost of sending *chats* for *n_samples* samples: input tokens counted, output
        tokens bounded by ``max_tokens``, money where a price is given."""
        from dslrun.operators.llm.tokens import token_counter

        count = token_counter(self)
        from dslrun.runtime.api.endpoints import price_for

        n_in = sum(count(chat) for chat in chats)
        n_out = len(chats) * int(self.request_options().get("max_tokens") or 512)
        api = self.resource == Resource.API
        price = price_for(self.endpoint_url(), self.model_name, self.llm.price) if api else None
        money = price.cost(n_in, n_out) if price is not None else None
        return Cost(samples=n_samples, api_calls=len(chats) if api else 0,
                    forward_passes=0 if api else len(chats), input_tokens=n_in, output_tokens=n_out, money=money)
