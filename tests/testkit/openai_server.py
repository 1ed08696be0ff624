"""A real OpenAI-compatible HTTP server for tests and benchmarks.

``POST /v1/chat/completions`` (non-streaming, ``logprobs``/``top_logprobs``,
``usage``), ``POST /v1/completions`` (a raw ``prompt``; ``logprobs`` as a count, as vLLM
takes it) and ``GET /v1/models``, on 127.0.0.1 and a free port. HTTP/1.1 with
keep-alive on asyncio streams in a background thread, so a per-call latency
never blocks other requests (hundreds can be in flight).

Replies are scripted (``reply(request_json) -> str``; the default is a
deterministic score from the prompt hash). Faults are injected at a seeded
rate, decided per (prompt hash, n-th request for that prompt) so they do not
depend on arrival order: ``429`` (with ``Retry-After``), ``500``, ``hang``
(no answer until the client goes away), ``drop`` (socket closed without a
response), ``malformed`` (a 200 whose text does not parse) and, on request,
``bad_json`` (a 200 whose body is not JSON), ``503``, ``empty_choices``, ``null_content``,
``out_of_scale`` (the reply "99") and ``nan`` (the reply "NaN"). ``rpm=`` makes the server enforce
a requests-per-minute limit itself (a token bucket holding ``rpm_burst``
requests) and answer 429 beyond it.

    with OpenAITestServer(latency=0.2, fault_rate=0.2, seed=1) as srv:
        client = openai.AsyncOpenAI(base_url=srv.base_url, api_key="x")
        ...
        srv.stats().total, srv.count(messages)

Manual use (from ``tests/``): ``python -m testkit.openai_server --port 8000``.
Counters are also served as JSON at ``GET /_stats``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any

from testkit.openai_replies import (
    FAULT_KINDS,
    MALFORMED_TEXT,
    REPLY_FAULTS,
    FaultFn,
    FaultPlan,
    ReplyFn,
    ServerStats,
    TopLogprobsFn,
    completion_body,
    default_reply,
    error_body,
    prompt_hash,
    request_prompt,
    text_completion_body,
)

RetryAfter = float | str | Callable[[], str] | None


class OpenAITestServer:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        reply: ReplyFn = default_reply,
        top_logprobs: TopLogprobsFn | None = None,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        fault_kinds: Sequence[str] = FAULT_KINDS,
        fault_rates: dict[str, float] | None = None,
        fault_fn: FaultFn | None = None,
        seed: int = 0,
        retry_after: RetryAfter = "1",
        hang_s: float = 600.0,
        rpm: float | None = None,
        rpm_burst: float | None = None,
        models: Sequence[str] = ("test-model",),
        api_key: str | None = None,
        strict_models: bool = False,
        gate: threading.Event | None = None,
    ):
        self.host, self.port = host, port
        self.reply, self.top_logprobs, self.latency = reply, top_logprobs, latency
        self.fault_plan = FaultPlan(fault_rate, fault_kinds, fault_rates, seed)
        self.fault_fn = fault_fn
        self.retry_after, self.hang_s = retry_after, hang_s
        self.models, self.api_key = list(models), api_key
        self.strict_models = strict_models  # 404 model_not_found for a model not in ``models``, as OpenAI
        self.gate = gate  # when given, every reply waits until it is set (requests are counted at once)
        self.rpm = rpm
        self._burst = rpm_burst if rpm_burst is not None else max(1.0, (rpm or 0) / 60)
        self._tokens, self._stamp = self._burst, time.monotonic()
        self._lock = threading.Lock()
        self._stats = ServerStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.AbstractServer | None = None

    # -- lifecycle -----------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> OpenAITestServer:
        ready = threading.Event()
        errors: list[BaseException] = []
        self._loop = asyncio.new_event_loop()

        def serve() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._server = self._loop.run_until_complete(
                    asyncio.start_server(self._handle, self.host, self.port, backlog=2048))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                errors.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="openai-test-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError, TimeoutError):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._thread.join(10)
        self._loop = self._thread = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.get_running_loop().call_soon(asyncio.get_running_loop().stop)

    def __enter__(self) -> OpenAITestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- counters ------------------------------------------------------------------
    def stats(self) -> ServerStats:
        with self._lock:
            return self._stats.copy()

    @property
    def total(self) -> int:
        with self._lock:
            return self._stats.total

    def count(self, messages_or_hash: Any) -> int:
        key = messages_or_hash if isinstance(messages_or_hash, str) else prompt_hash(messages_or_hash)
        with self._lock:
            return self._stats.per_prompt.get(key, 0)

    def reset(self) -> None:
        with self._lock:
            self._stats = ServerStats()
            self._tokens, self._stamp = self._burst, time.monotonic()

    def _outcome(self, name: str) -> None:
        with self._lock:
            self._stats.outcomes[name] += 1

    def _admit(self) -> float:
        """Take one token from the rpm bucket; 0.0 if admitted, else seconds to wait."""
        with self._lock:
            now = time.monotonic()
            if self.rpm:
                rate = self.rpm / 60
                self._tokens = min(self._burst, self._tokens + (now - self._stamp) * rate)
                self._stamp = now
                if self._tokens < 1:
                    return (1 - self._tokens) / rate
                self._tokens -= 1
            self._stats.arrivals.append(now)
            return 0.0

    # -- HTTP ----------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                    lines = head.decode("latin-1").split("\r\n")
                    method, target, _ = lines[0].split(" ", 2)
                    headers = {k.strip().lower(): v.strip() for k, _, v in
                               (ln.partition(":") for ln in lines[1:] if ln)}
                    length = int(headers.get("content-length") or 0)
                    body = await reader.readexactly(length) if length else b""
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                        ValueError):
                    return
                try:
                    keep = await self._route(method, target.split("?")[0], headers, body, reader,
                                             writer)
                except (ConnectionError, asyncio.CancelledError):
                    raise
                except Exception as exc:  # a scripted reply() raised: say so, keep serving
                    self._outcome("server_bug")
                    keep = await self._send(writer, 500, error_body(
                        f"test server: {type(exc).__name__}: {exc}", "server_error"))
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _send(self, writer: asyncio.StreamWriter, status: int, payload: Any,
                    headers: dict[str, str] | None = None) -> bool:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Content-Type: application/json",
                f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return True

    async def _route(self, method: str, path: str, headers: dict[str, str], body: bytes,
                     reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        path = path.rstrip("/")
        given = headers.get("authorization", "").removeprefix("Bearer ")
        if self.api_key is not None and path.startswith("/v1") and given != self.api_key:
            self._outcome("401")  # echoes the key, as a careless server might: clients must redact
            return await self._send(writer, 401, error_body(
                f"Incorrect API key provided: {given}.", "invalid_request_error", "invalid_api_key"))
        if method == "GET" and path in ("/v1/models", "/models"):
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "testkit"} for m in self.models]
            return await self._send(writer, 200, {"object": "list", "data": data})
        if method == "GET" and path == "/_stats":
            return await self._send(writer, 200, self.stats().as_json())
        chat = path in ("/v1/chat/completions", "/chat/completions")
        if method == "POST" and (chat or path in ("/v1/completions", "/completions")):
            field, kind = ("messages", list) if chat else ("prompt", str)
            try:
                request = json.loads(body)
                assert isinstance(request, dict) and isinstance(request.get(field), kind)
            except (ValueError, AssertionError):
                self._outcome("400")
                return await self._send(writer, 400, error_body(
                    f"request body must be JSON with a '{field}' {kind.__name__}", "invalid_request_error"))
            if chat:
                request.pop("prompt", None)
            else:
                self._outcome("completions")
            if self.strict_models and request.get("model") not in self.models:
                self._outcome("404")
                return await self._send(writer, 404, error_body(
                    f"The model `{request.get('model')}` does not exist or you do not have access to it.",
                    "invalid_request_error", "model_not_found"))
            return await self._completion(request, reader, writer)
        return await self._send(writer, 404, error_body(f"no route {method} {path}", "not_found"))

    async def _completion(self, request: dict, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> bool:
        phash = prompt_hash(request_prompt(request))
        with self._lock:
            s = self._stats
            s.total += 1
            n = s.per_prompt.get(phash, 0)
            s.per_prompt[phash] = n + 1
            s.in_flight += 1
            s.max_in_flight = max(s.max_in_flight, s.in_flight)
        try:
            wait = self._admit()
            if wait:
                self._outcome("rpm_429")
                return await self._send(writer, 429, error_body(
                    f"Rate limit reached: {self.rpm:g} requests per minute.", "requests",
                    "rate_limit_exceeded"),
                    {"Retry-After": str(math.ceil(wait)), "retry-after-ms": str(math.ceil(wait * 1000))})
            fault = self.fault_fn(request, n) if self.fault_fn else self.fault_plan(phash, n)
            if fault == "429":
                self._outcome("429")
                ra = self.retry_after() if callable(self.retry_after) else self.retry_after
                hdrs = {} if ra is None else {"Retry-After": ra if isinstance(ra, str) else f"{ra:g}"}
                return await self._send(writer, 429, error_body(
                    "Rate limit reached (injected).", "requests", "rate_limit_exceeded"), hdrs)
            if fault == "hang":
                self._outcome("hang")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(reader.read(1), self.hang_s)  # until the client leaves
                return False
            while self.gate is not None and not self.gate.is_set():
                await asyncio.sleep(0.01)
            if self.latency:
                await asyncio.sleep(self.latency)
            if fault == "drop":
                self._outcome("drop")
                return False
            if fault == "500":
                self._outcome("500")
                return await self._send(writer, 500, error_body("The server had an error (injected).",
                                                                "server_error"))
            if fault == "503":
                self._outcome("503")
                return await self._send(writer, 503, error_body("The engine is currently overloaded (injected).",
                                                                "server_error"))
            if fault == "bad_json":
                self._outcome("bad_json")
                return await self._send(writer, 200, b'{"id": "chatcmpl-broken", "choices": [')
            text = (MALFORMED_TEXT if fault == "malformed" else REPLY_FAULTS[fault] if fault in REPLY_FAULTS
                    else self.reply(request))
            self._outcome(fault if fault in ("malformed", "empty_choices", "null_content", *REPLY_FAULTS) else "ok")
            model = self.models[0] if self.models else "test-model"
            make = completion_body if "messages" in request else text_completion_body
            body = make(request, text, model=model, top_fn=self.top_logprobs)
            if fault == "empty_choices":
                body["choices"] = []
            elif fault == "null_content" and "messages" in request:
                body["choices"][0]["message"]["content"] = None
            elif fault == "null_content":
                body["choices"][0]["text"] = None
            return await self._send(writer, 200, body)
        finally:
            with self._lock:
                self._stats.in_flight -= 1


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds per call")
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rpm", type=float, default=None, help="enforce a requests-per-minute limit")
    args = ap.parse_args(argv)
    srv = OpenAITestServer(host=args.host, port=args.port, latency=args.latency,
                           fault_rate=args.fault_rate, seed=args.seed, rpm=args.rpm).start()
    print(f"serving on {srv.base_url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
