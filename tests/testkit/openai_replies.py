"""Scripted chat-completion bodies for the OpenAI-compatible test server.

The pieces without I/O: the prompt hash that identifies a conversation, the
default deterministic reply, a toy tokenizer, the ``logprobs`` block in the
OpenAI response shape, the seeded fault plan, and the server's stats record.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = ("429", "500", "hang", "drop", "malformed")
# On request only: a 503, a completion with no choices or null content, and replies whose
# first line is a number off every judge's scale or not a number at all.
REPLY_FAULTS = {"out_of_scale": "99\nAn excellent response.", "nan": "NaN\nHard to say."}
ALL_FAULT_KINDS = (*FAULT_KINDS, "bad_json", "503", "empty_choices", "null_content", *REPLY_FAULTS)
MALFORMED_TEXT = "I am sorry, but I cannot rate this response."

ReplyFn = Callable[[dict], str]
TopLogprobsFn = Callable[[dict, str], Mapping[str, float]]
FaultFn = Callable[[dict, int], "str | None"]

_TOKEN = re.compile(r"\s*[A-Za-z]+|\s*\d|\s*[^\sA-Za-z\d]|\s+")


def canonical_messages(messages: Any) -> str:
    return json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def prompt_hash(messages: Any) -> str:
    """sha256 of the canonical JSON of a request's ``messages``."""
    return hashlib.sha256(canonical_messages(messages).encode()).hexdigest()


def unit_hash(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def request_prompt(request: dict) -> Any:
    """What a request asks about: a chat's ``messages``, or a text completion's ``prompt``."""
    return request["prompt"] if "prompt" in request and "messages" not in request else request.get("messages")


def default_reply(request: dict) -> str:
    """A score from 1.0 to 5.0 (step 0.5) on the first line, derived from the prompt."""
    h = prompt_hash(request_prompt(request))
    score = 1 + (int(h[:8], 16) % 9) / 2
    return f"{score:.1f}\nThe response is judged on helpfulness and accuracy ({h[:8]})."


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text) or [text]


def count_prompt_tokens(messages: Any) -> int:
    if not isinstance(messages, list):
        return 0
    total = 3
    for m in messages:
        content = m.get("content", "") if isinstance(m, dict) else ""
        total += 4 + len(tokenize(content if isinstance(content, str) else json.dumps(content)))
    return total


def default_top_logprobs(request: dict, first_token: str) -> dict[str, float]:
    """The chosen token at p=0.7, the other digits 1-5 sharing the rest."""
    chosen = first_token.strip() or first_token
    others = [d for d in "12345" if d != chosen][:4]
    out = {chosen: math.log(0.7)}
    for i, d in enumerate(others):
        out[d] = math.log(0.3 * (0.5 ** (i + 1)) / (1 - 0.5**len(others)))
    return out


def _entry(token: str, logprob: float) -> dict:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


def logprobs_block(tokens: Sequence[str], first: Mapping[str, float], k: int) -> dict:
    content = []
    for i, tok in enumerate(tokens):
        if i == 0:
            ranked = sorted(first.items(), key=lambda kv: -kv[1])
            chosen_lp = first.get(tok, first.get(tok.strip(), ranked[0][1] if ranked else 0.0))
            tops = [_entry(t, lp) for t, lp in ranked[:k]]
        else:
            chosen_lp, tops = 0.0, [_entry(tok, 0.0)][:k]
        item = _entry(tok, chosen_lp)
        item["top_logprobs"] = tops
        content.append(item)
    return {"content": content, "refusal": None}


def completion_body(request: dict, text: str, *, model: str, top_fn: TopLogprobsFn | None) -> dict:
    """The JSON of a non-streaming ``chat.completion`` for ``text``."""
    tokens = tokenize(text)
    finish = "stop"
    max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
    if isinstance(max_tokens, int) and 0 < max_tokens < len(tokens):
        tokens, finish = tokens[:max_tokens], "length"
        text = "".join(tokens)
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": text, "refusal": None},
        "finish_reason": finish,
        "logprobs": None,
    }
    if request.get("logprobs"):
        k = int(request.get("top_logprobs") or 0)
        first = (top_fn or default_top_logprobs)(request, tokens[0])
        choice["logprobs"] = logprobs_block(tokens, first, k)
    prompt_tokens = count_prompt_tokens(request.get("messages"))
    h = prompt_hash(request.get("messages"))
    return {
        "id": f"chatcmpl-{h[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model") or model,
        "system_fingerprint": "fp_testkit",
        "choices": [choice],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        },
    }


def text_completion_body(request: dict, text: str, *, model: str, top_fn: TopLogprobsFn | None) -> dict:
    """The JSON of a non-streaming ``text_completion`` (``/v1/completions``) for ``text``: its
    ``logprobs`` (an int, as vLLM and llama.cpp take it) is the number of top tokens per position."""
    chat = completion_body({**request, "messages": None, "logprobs": False}, text, model=model, top_fn=top_fn)
    choice = chat["choices"][0]
    text, tokens = choice["message"]["content"], tokenize(choice["message"]["content"])
    logprobs = None
    k = request.get("logprobs")
    if isinstance(k, int) and not isinstance(k, bool):
        first = (top_fn or default_top_logprobs)(request, tokens[0])
        ranked = sorted(first.items(), key=lambda kv: -kv[1])
        chosen = first.get(tokens[0], first.get(tokens[0].strip(), ranked[0][1] if ranked else 0.0))
        logprobs = {"tokens": tokens, "token_logprobs": [chosen] + [0.0] * (len(tokens) - 1),
                    "top_logprobs": [dict(ranked[:k])] + [{t: 0.0} for t in tokens[1:]],
                    "text_offset": [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]}
    prompt = request.get("prompt")
    prompt_tokens = len(tokenize(prompt)) if isinstance(prompt, str) else 0
    return {"id": "cmpl-" + prompt_hash(prompt)[:24], "object": "text_completion", "created": chat["created"],
            "model": chat["model"],
            "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": choice["finish_reason"]}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
                      "total_tokens": prompt_tokens + len(tokens)}}


def error_body(message: str, kind: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class FaultPlan:
    """Seeded fault choice per (prompt hash, n-th request for that prompt).

    Independent of arrival order, so a run under any concurrency sees the same
    faults. ``rates`` maps a fault kind to its probability; ``fault_rate``
    spreads one rate evenly over ``kinds``.
    """

    def __init__(self, fault_rate: float = 0.0, kinds: Sequence[str] = FAULT_KINDS,
                 rates: Mapping[str, float] | None = None, seed: int = 0):
        if rates is None:
            rates = {k: fault_rate / len(kinds) for k in kinds} if kinds else {}
        unknown = set(rates) - set(ALL_FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {ALL_FAULT_KINDS}")
        if sum(rates.values()) > 1 + 1e-9:
            raise ValueError("fault rates add up to more than 1")
        self.rates = dict(rates)
        self.seed = seed

    def __call__(self, phash: str, n: int) -> str | None:
        u = unit_hash(self.seed, phash, n)
        acc = 0.0
        for kind, rate in self.rates.items():
            acc += rate
            if u < acc:
                return kind
        return None


@dataclass
class ServerStats:
    """A snapshot of what the server saw. ``outcomes`` counts: ok, malformed, bad_json,
    429 (injected), rpm_429 (limit enforced), 500, hang, drop, 4xx client errors."""

    total: int = 0
    per_prompt: dict[str, int] = field(default_factory=dict)
    outcomes: Counter = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    arrivals: list[float] = field(default_factory=list)  # monotonic times of admitted requests

    @property
    def sent_429(self) -> int:
        return self.outcomes["429"] + self.outcomes["rpm_429"]

    def copy(self) -> ServerStats:
        return ServerStats(self.total, dict(self.per_prompt), Counter(self.outcomes),
                           self.in_flight, self.max_in_flight, list(self.arrivals))

    def as_json(self) -> dict[str, Any]:
        return {"total": self.total, "per_prompt": self.per_prompt, "outcomes": dict(self.outcomes),
                "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
                "arrivals": self.arrivals, "sent_429": self.sent_429}
