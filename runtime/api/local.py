"""``LocalChatBackend``: the API pool's backend interface over a transformers causal LM.

The same ``chat(messages, **opts) -> Reply`` as ``OpenAIBackend``, so a spec switches
between a server and an in-process model with ``backend: local``. Calls that arrive
together (the pool keeps ``concurrency`` in flight) are generated as one left-padded
batch, up to ``max_batch``, in a worker thread, so the event loop stays free and the
model sees a batch instead of one sequence at a time. Options: ``temperature`` (0 or absent: greedy), ``max_tokens``,
``seed``, ``logprobs``/``top_logprobs`` (of the first generated position, from the raw
logits), ``logprob_tokens`` (strings whose first-position log-probabilities are always
returned, e.g. DEITA's "1"…"6"), ``processed_logprobs`` (read those from the scores after
the model's logits processors instead, e.g. a ``repetition_penalty`` in its generation
config, as DEITA's ``generate(..., output_scores=True)`` does; sampling warpers are not
applied at temperature 0, where DEITA's call would apply them only if the generation config
samples), and ``raw`` (send the user text as is, without the chat template, as DEITA's
scorers and other completion-style prompts expect).
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from typing import Any

from dslrun.runtime.api.types import CallError, Reply, raw_text

DEFAULT_MAX_TOKENS = 256
CPU_MICRO_BATCH = 4  # replies land (and are cached) every few samples: on a CPU a batch of 16 takes many minutes
GPU_MICRO_BATCH = 16


def micro_batch(model: Any, concurrency: int) -> int:
    """How many samples are generated together; each batch's replies are delivered (and cached) when it ends."""
    device = next(model.parameters()).device
    return max(1, min(concurrency, CPU_MICRO_BATCH if device.type == "cpu" else GPU_MICRO_BATCH))


class LocalChatBackend:
    def __init__(self, model: Any, tokenizer: Any, name: str = "local", max_batch: int = 16):
        self.lm, self.tokenizer, self.model = model, tokenizer, name
        self.max_batch = max(1, max_batch)
        self._queue: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"local:{self.model}"

    def prompt_text(self, messages: list[dict[str, Any]], raw: bool) -> tuple[str, bool]:
        """The text to continue, and whether the tokenizer should add its special tokens."""
        if raw or not getattr(self.tokenizer, "chat_template", None):
            return raw_text(messages), True
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), False

    async def chat(self, messages: list[dict[str, Any]], **opts: Any) -> Reply:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        self._ensure_worker()
        self._queue.put((messages, opts, loop, future))
        return await future

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._serve, name="dslrun-local-chat", daemon=True)
                self._worker.start()

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            batch: list[Any] = [first]
            rest: list[Any] = []
            key = _opts_key(first[1])
            while len(batch) < self.max_batch:  # whatever is already waiting, with the same options
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                (batch if _opts_key(item[1]) == key else rest).append(item)
            for item in rest:
                self._queue.put(item)
            try:
                replies: list[Any] = self._generate([b[0] for b in batch], first[1])
            except Exception as exc:  # delivered to every caller of the batch
                replies = [exc] * len(batch)
            for (_, _, loop, fut), reply in zip(batch, replies, strict=True):
                loop.call_soon_threadsafe(_settle, fut, reply)

    def generate_batch(self, conversations: list[list[dict[str, Any]]], **opts: Any) -> list[Reply]:
        """One reply per conversation, generated together in this thread (no event loop needed)."""
        return self._generate(conversations, opts)

    def _generate(self, conversations: list[list[dict[str, Any]]], opts: dict[str, Any]) -> list[Reply]:
        import torch

        texts, special = zip(*(self.prompt_text(m, bool(opts.get("raw"))) for m in conversations), strict=True)
        tok = self.tokenizer
        side, tok.padding_side = tok.padding_side, "left"  # generation continues every row at the end
        try:
            enc = tok(list(texts), return_tensors="pt", padding=True, add_special_tokens=special[0])
        finally:
            tok.padding_side = side
        device = next(self.lm.parameters()).device
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        temperature = opts.get("temperature") or 0.0
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        gen: dict[str, Any] = {"max_new_tokens": int(opts.get("max_tokens") or DEFAULT_MAX_TOKENS),
                               "do_sample": temperature > 0, "return_dict_in_generate": True,
                               "output_logits": True, "pad_token_id": pad}
        processed = bool(opts.get("processed_logprobs"))
        if processed:
            gen["output_scores"] = True
        if temperature > 0:
            gen["temperature"] = float(temperature)
        else:  # greedy: neutralise sampling defaults a generation_config may carry
            gen.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            if opts.get("seed") is not None:
                torch.manual_seed(int(opts["seed"]))
            try:
                out = self.lm.generate(ids, attention_mask=mask, **gen)
            except torch.OutOfMemoryError as exc:  # pragma: no cover - GPU only
                raise CallError("server_error", f"out of memory: {exc}") from None
        want_lp = opts.get("logprobs") or opts.get("top_logprobs") or opts.get("logprob_tokens")
        stops = {t for t in (tok.eos_token_id, pad) if t is not None}
        replies = []
        for r in range(len(conversations)):
            new = out.sequences[r, ids.shape[1]:].tolist()
            n = next((k + 1 for k, t in enumerate(new) if t in stops), len(new))  # up to and with the stop
            top = None
            if want_lp:
                first = out.scores[0][r] if processed else out.logits[0][r]
                top = self.first_logprobs(first.float(), int(opts.get("top_logprobs") or 0),
                                          opts.get("logprob_tokens") or ())
            replies.append(Reply(text=tok.decode(new[:n], skip_special_tokens=True), top_logprobs=top,
                                 input_tokens=int(mask[r].sum()), output_tokens=n, finish_reason="stop",
                                 model=self.model))
        return replies

    def first_logprobs(self, logits: Any, k: int, tokens: Any) -> dict[str, float]:
        """``{token text: logprob}`` of the top *k* tokens plus each of *tokens* (single-token strings)."""
        logp = logits.log_softmax(-1)
        ids = set(logp.topk(k).indices.tolist()) if k else set()
        for t in tokens:
            tid = self.tokenizer.convert_tokens_to_ids(t)
            if tid is None or tid == self.tokenizer.unk_token_id:
                enc = self.tokenizer(t, add_special_tokens=False)["input_ids"]
                tid = enc[0] if len(enc) == 1 else None
            if tid is not None:
                ids.add(int(tid))
        out: dict[str, float] = {}
        for tid in ids:
            text, lp = self.tokenizer.decode([tid]), float(logp[tid])
            out[text] = max(lp, out.get(text, float("-inf")))
        return out

    def __repr__(self) -> str:
        return f"LocalChatBackend(model={self.model!r})"


def _opts_key(opts: dict[str, Any]) -> str:
    return json.dumps(opts, sort_keys=True, default=str)


def _settle(fut: asyncio.Future, reply: Any) -> None:
    if fut.done():  # the caller gave up (cancelled)
        return
    if isinstance(reply, BaseException):
        fut.set_exception(reply)
    else:
        fut.set_result(reply)
