"""Answers of a fine-tuned model to evaluation prompts: batched, left-padded, greedy by default.

The prompt is the training template's rendering of the instruction (Cherry LLM's
``eva_generation.py`` does the same with its ``prompt_no_input``), and the answer is the
text generated after it, up to EOS or ``max_new_tokens``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Prompt fields of the test sets used by IFD/AlpaGasus (Cherry LLM eva_generation.py), tried in order.
PROMPT_KEYS = ("instruction", "Instruction", "text", "prompt", "conversations", "question", "input")


def load_eval_set(path: str | Path, limit: int | None = None) -> list[dict[str, str]]:
    """Prompts of an evaluation set: JSONL or a JSON list; ``{"instruction", "input"}`` per prompt.

    Self-Instruct's ``instances[0].input`` becomes the input, as the original does.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    records = json.loads(text) if text.lstrip().startswith("[") else [
        json.loads(line) for line in text.splitlines() if line.strip()]
    out = []
    for i, rec in enumerate(records):
        key = next((k for k in PROMPT_KEYS if rec.get(k)), None)
        if key is None:
            raise ValueError(f"{path}: record {i} has none of the prompt fields {', '.join(PROMPT_KEYS)}")
        prompt = rec[key]
        if isinstance(prompt, list):  # a conversation: its first user turn
            first = prompt[0]
            prompt = first.get("value") or first.get("content") if isinstance(first, dict) else str(first)
        extra = ""
        inst = rec.get("instances")
        if key != "input" and isinstance(inst, list) and inst and isinstance(inst[0], dict):
            extra = inst[0].get("input") or ""
        out.append({"instruction": str(prompt), "input": str(extra)})
        if limit and len(out) >= limit:
            break
    return out


def setting_name(path: str | Path) -> str:
    stem = Path(path).stem
    head, _, tail = stem.rpartition("_")
    stem = head if head and tail.isdigit() else stem  # a slice: lima_test_20 -> lima_test
    for suffix in ("_test_set", "_test", "_eval"):
        stem = stem.removesuffix(suffix)
    return stem


def generate(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int = 256,
             batch_size: int = 8, temperature: float = 0.0, seed: int = 0) -> list[str]:
    """One answer per prompt; prompts are batched by length, answers come back in input order."""
    import torch

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list[str] = [""] * len(prompts)
    dev = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True)
            kw: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": pad,
                                  "do_sample": temperature > 0}
            if temperature > 0:
                kw["temperature"] = temperature
                torch.manual_seed(seed)
            else:  # greedy: drop sampling defaults a generation_config may carry
                kw.update(temperature=None, top_p=None, top_k=None)
            with torch.inference_mode():
                out = model.generate(enc["input_ids"].to(dev), attention_mask=enc["attention_mask"].to(dev), **kw)
            for r, i in enumerate(idx):
                new = out[r, enc["input_ids"].shape[1]:].tolist()
                if tokenizer.eos_token_id in new:
                    new = new[:new.index(tokenizer.eos_token_id)]
                answers[i] = tokenizer.decode(new, skip_special_tokens=True).strip()
    finally:
        tokenizer.padding_side = side
    return answers
