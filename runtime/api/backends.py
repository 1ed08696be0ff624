"""LLM backends: one async ``chat`` per call, errors classified for the pool's retries.

A backend is anything with ``model``, ``endpoint`` and ``async chat(messages, **opts)
-> Reply`` that raises ``CallError`` on failure (see ``Backend``). ``OpenAIBackend``
talks to any OpenAI-compatible server through ``openai.AsyncOpenAI``; a local
transformers backend can implement the same protocol.

Credentials: a backend is given the *name* of the environment variable holding
its key, never the key. The key is read when a client is made and held only by
that client object (no field or repr of ours shows it); it is redacted from every
error message the backend raises.
``openai`` is imported only when a client is first needed.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import os
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol, runtime_checkable

from dslrun.runtime.api.limits import endpoint_key
from dslrun.runtime.api.types import CallError, Reply, raw_text

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def resolve_base_url(base_url: str | None) -> tuple[str, str]:
    """The server to call and where that came from: the spec's ``base_url``, else
    ``$OPENAI_BASE_URL`` (as every OpenAI-ecosystem tool honours it), else OpenAI's."""
    if base_url:
        return base_url, "base_url"
    env = os.environ.get("OPENAI_BASE_URL", "").strip()
    if env:
        return env, "$OPENAI_BASE_URL"
    return DEFAULT_BASE_URL, "OpenAI's default"


@runtime_checkable
class Backend(Protocol):
    """What the pool needs from a model endpoint."""

    model: str

    @property
    def endpoint(self) -> str:
        """Identity for shared rate limits (base URL + model)."""
        ...

    async def chat(self, messages: list[dict[str, Any]], **opts: Any) -> Reply:
        """One chat completion; raise ``CallError`` (kind + retryable) on failure."""
        ...


class MissingCredentialError(RuntimeError):
    """The environment variable that should hold an API key is not set."""

    def __init__(self, var: str, what: str = "API key"):
        super().__init__(f"environment variable {var} is not set; it must hold the {what} "
                         f"(export {var}=...). Specs name the variable, never the key.")
        self.var = var


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lower:
        try:
            return max(0.0, float(lower["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = lower.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def classify_openai_error(exc: BaseException, secret: str | None = None) -> CallError:
    """Map an ``openai`` (or transport) exception to a ``CallError`` with the key redacted."""
    import openai

    msg = _redact(f"{type(exc).__name__}: {exc}", secret)
    if isinstance(exc, openai.APITimeoutError | asyncio.TimeoutError | TimeoutError):
        return CallError("timeout", msg)
    if isinstance(exc, openai.APIConnectionError | ConnectionError):
        return CallError("connection", msg)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after = parse_retry_after(dict(exc.response.headers))
        code = getattr(exc, "code", None)
        if status == 429:
            if code == "insufficient_quota":  # out of credit: retrying cannot help
                return CallError("quota", msg, status=status)
            return CallError("rate_limited", msg, retry_after=retry_after, status=status)
        if status == 408:
            return CallError("timeout", msg, status=status)
        if status >= 500 or status == 409:
            return CallError("server_error", msg, retry_after=retry_after, status=status)
        if status in (401, 403):
            return CallError("auth", msg, status=status)
        if status == 404:
            return CallError("not_found", msg, status=status)
        return CallError("bad_request", msg, status=status)
    if isinstance(exc, openai.APIResponseValidationError | ValueError):
        return CallError("bad_response", msg)
    if isinstance(exc, TypeError):
        return CallError("bad_request", msg)
    return CallError("error", msg, retryable=False)


def reply_from_json(data: Any) -> Reply:
    """A ``Reply`` from the JSON of a chat completion (the OpenAI response shape)."""
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
    except (TypeError, KeyError, IndexError, AttributeError):
        raise CallError("bad_response", f"not a chat completion: {str(data)[:200]!r}") from None
    top: dict[str, float] | None = None
    content = (choice.get("logprobs") or {}).get("content")
    if content:
        first = content[0]
        top = ({t["token"]: t["logprob"] for t in first.get("top_logprobs") or []}
               or {first["token"]: first["logprob"]})
    usage = data.get("usage") or {}
    return Reply(text=text, top_logprobs=top, input_tokens=usage.get("prompt_tokens") or 0,
                 output_tokens=usage.get("completion_tokens") or 0,
                 finish_reason=choice.get("finish_reason"), model=data.get("model"), raw=data)


def reply_from_completion_json(data: Any) -> Reply:
    """A ``Reply`` from the JSON of a text completion (``/v1/completions``): the first position's
    ``top_logprobs`` dict becomes ``Reply.top_logprobs`` (vLLM and llama.cpp send it)."""
    try:
        choice = data["choices"][0]
        text = choice.get("text") or ""
    except (TypeError, KeyError, IndexError, AttributeError):
        raise CallError("bad_response", f"not a text completion: {str(data)[:200]!r}") from None
    top: dict[str, float] | None = None
    logprobs = choice.get("logprobs") or {}
    tops, tokens = logprobs.get("top_logprobs") or [], logprobs.get("tokens") or []
    if tops and tops[0]:
        top = {str(t): float(lp) for t, lp in tops[0].items()}
    elif tokens and (logprobs.get("token_logprobs") or [None])[0] is not None:
        top = {tokens[0]: float(logprobs["token_logprobs"][0])}
    usage = data.get("usage") or {}
    return Reply(text=text, top_logprobs=top, input_tokens=usage.get("prompt_tokens") or 0,
                 output_tokens=usage.get("completion_tokens") or 0,
                 finish_reason=choice.get("finish_reason"), model=data.get("model"), raw=data)


def request_body(model: str, messages: list[dict[str, Any]], opts: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(path, JSON body) of one call. ``raw`` in ``opts``: a text completion of the messages'
    plain text (no chat template: DEITA's scorers are prompted so), whose ``logprobs`` is the
    number of top tokens per position; else a chat completion."""
    body = {k: v for k, v in opts.items() if k != "raw"}
    body["model"] = model
    if opts.get("raw"):
        k, wanted = body.pop("top_logprobs", None), body.pop("logprobs", None)
        if k or wanted:
            body["logprobs"] = int(k or 1)
        body["prompt"] = raw_text(messages)
        return "/completions", body
    if body.get("top_logprobs") and not body.get("logprobs"):
        body["logprobs"] = True
    body["messages"] = messages
    return "/chat/completions", body


class OpenAIBackend:
    """Chat completions from an OpenAI-compatible endpoint.

    ``api_key_env`` names the environment variable holding the key. ``temperature``,
    ``max_tokens``, ``seed``, ``logprobs``, ``top_logprobs`` are defaults that a request's
    ``opts`` override; any other option (and ``extra_body``) goes into the request body as is.
    ``raw: true`` sends the prompt as plain text to ``/v1/completions`` (``request_body``). The client makes no retries of its own (``max_retries=0``): the pool
    retries, within its rate limits and budget. Calls go round-robin over
    ``clients_per_loop`` clients per event loop: the HTTP connection pool scans its
    connections on every request, so many calls in flight on one client cost CPU
    quadratically (8 clients roughly double the calls per CPU-second at 64 in flight).
    """

    def __init__(self, model: str, *, base_url: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", timeout: float | None = 60.0,
                 temperature: float | None = None, max_tokens: int | None = None,
                 seed: int | None = None, logprobs: bool | None = None,
                 top_logprobs: int | None = None, extra_body: Mapping[str, Any] | None = None,
                 clients_per_loop: int = 8):
        self.model, self.base_url = model, resolve_base_url(base_url)[0]
        self.api_key_env, self.timeout = api_key_env, timeout
        self._api_key()  # fail now, with the variable's name, rather than at the first call
        defaults = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed,
                    "logprobs": logprobs, "top_logprobs": top_logprobs}
        self.defaults = {k: v for k, v in defaults.items() if v is not None}
        self.extra_body = dict(extra_body or {})
        self.clients_per_loop = max(1, clients_per_loop)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary())

    @property
    def endpoint(self) -> str:
        return endpoint_key(self.base_url, self.model)

    def _api_key(self) -> str:
        key = os.environ.get(self.api_key_env)
        if not key:
            raise MissingCredentialError(self.api_key_env)
        return key

    async def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            try:
                import openai
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ImportError("the OpenAI backend needs the 'openai' package: "
                                  "pip install 'dslrun[llm]'") from exc
            clients = [openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key(),
                                          max_retries=0, timeout=self.timeout)
                       for _ in range(self.clients_per_loop)]
            # The clients' connections belong to this loop. An async generator started here
            # is finalised by the loop's shutdown_asyncgens() (asyncio.run does it), which
            # closes the clients while their loop still runs, rather than at garbage
            # collection under some later loop.
            closer = self._hold(clients)
            await closer.__anext__()
            entry = self._clients[loop] = (itertools.cycle(clients), closer)
        return next(entry[0])

    async def prepare(self) -> None:
        """Import ``openai`` and make this loop's clients now, before the pool's first call:
        the import holds the event loop for up to seconds, and inside a call it would count
        against the attempt's timeout."""
        await self._client()

    async def _hold(self, clients: list[Any]) -> AsyncIterator[None]:
        try:
            yield
        finally:
            self._clients.pop(asyncio.get_running_loop(), None)
            for client in clients:
                await client.close()

    async def chat(self, messages: list[dict[str, Any]], **opts: Any) -> Reply:
        path, body = request_body(self.model, messages, {**self.extra_body, **self.defaults, **opts})
        client = await self._client()
        failure: CallError | None = None
        try:
            # The untyped call (``cast_to=object``: the JSON as a dict) skips the typed
            # ``chat.completions.create`` param transforms and model construction, about a
            # millisecond of CPU per call, and what we keep is the raw JSON anyway.
            data = await client.post(path, body=body, cast_to=object)
        except Exception as exc:  # classified outside the handler: no chained openai objects
            failure = classify_openai_error(exc, os.environ.get(self.api_key_env))
        if failure is not None:
            raise failure
        return reply_from_completion_json(data) if path == "/completions" else reply_from_json(data)

    async def aclose(self) -> None:
        """Close this event loop's client (other loops keep theirs)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        entry = self._clients.get(loop)
        if entry is not None:
            await entry[1].aclose()

    def __repr__(self) -> str:
        return (f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, "
                f"api_key_env={self.api_key_env!r})")
