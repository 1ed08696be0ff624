"""``LocalChatBackend``: the API pool's backend interface over a transformers causal LM.

The same ``chat(messages, **opts) -> Reply`` as ``OpenAIBackend``, so a spec switches
between a server and an in-process model with ``backend: local``. Calls are
serialised (one model, one generate at a time) and run in a worker thread so the
event loop stays free. Options: ``temperature`` (0 or absent: greedy), ``max_tokens``,
``seed``, ``logprobs``/``top_logprobs`` (of the first generated position, from the raw
logits), ``logprob_tokens`` (strings whose first-position log-probabilities are always
returned, e.g. DEITA's "1"…"6"), and ``raw`` (send the user text as is, without the
chat template, as DEITA's scorers and other completion-style prompts expect).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from dslrun.runtime.api.types import CallError, Reply

DEFAULT_MAX_TOKENS = 256


class LocalChatBackend:
    def __init__(self, model: Any, tokenizer: Any, name: str = "local"):
        self.lm, self.tokenizer, self.model = model, tokenizer, name
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"local:{self.model}"

    def prompt_text(self, messages: list[dict[str, Any]], raw: bool) -> tuple[str, bool]:
        """The text to continue, and whether the tokenizer should add its special tokens."""
        if raw or not getattr(self.tokenizer, "chat_template", None):
            return "\n\n".join(str(m.get("content", "")) for m in messages), True
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), False

    async def chat(self, messages: list[dict[str, Any]], **opts: Any) -> Reply:
        return await asyncio.to_thread(self._chat, messages, opts)

    def _chat(self, messages: list[dict[str, Any]], opts: dict[str, Any]) -> Reply:
        import torch

        text, special = self.prompt_text(messages, bool(opts.get("raw")))
        enc = self.tokenizer(text, return_tensors="pt", add_special_tokens=special)
        device = next(self.lm.parameters()).device
        ids = enc["input_ids"].to(device)
        temperature = opts.get("temperature") or 0.0
        gen: dict[str, Any] = {"max_new_tokens": int(opts.get("max_tokens") or DEFAULT_MAX_TOKENS),
                               "do_sample": temperature > 0, "return_dict_in_generate": True,
                               "output_logits": True,
                               "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id}
        if temperature > 0:
            gen["temperature"] = float(temperature)
        else:  # greedy: neutralise sampling defaults a generation_config may carry
            gen.update(temperature=None, top_p=None, top_k=None)
        with self._lock, torch.inference_mode():
            if opts.get("seed") is not None:
                torch.manual_seed(int(opts["seed"]))
            try:
                out = self.lm.generate(ids, attention_mask=enc["attention_mask"].to(device), **gen)
            except torch.OutOfMemoryError as exc:  # pragma: no cover - GPU only
                raise CallError("server_error", f"out of memory: {exc}") from None
        new = out.sequences[0, ids.shape[1]:]
        reply_text = self.tokenizer.decode(new, skip_special_tokens=True)
        top = None
        if opts.get("logprobs") or opts.get("top_logprobs") or opts.get("logprob_tokens"):
            top = self.first_logprobs(out.logits[0][0].float(), int(opts.get("top_logprobs") or 0),
                                      opts.get("logprob_tokens") or ())
        return Reply(text=reply_text, top_logprobs=top, input_tokens=int(ids.shape[1]),
                     output_tokens=int(new.shape[0]), finish_reason="stop", model=self.model)

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
