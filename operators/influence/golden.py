"""Nuggets' golden score (Li et al., ACL 2024; pldlgb/nuggets ``instruction_main.py``, ``tasks/alpaca.py``).

Every sample is written as ``Instruction:\\n{instruction}\\n[Input:\\n{input}\\n]Response:\\n{output}``
(fields ``.strip()``-ed). An anchor is encoded as ``tasks/loader.py:
TokenizedForGenRightPad`` does: without special tokens, cut to its first 200 tokens
(``max_length=200, truncation=True``); its score is the summed log-probability of its
answer tokens — from ``len(tokenize(query))`` to the end of the whole text's tokens, at
most token 200 (an anchor whose query fills the 200 scores 0 both ways and never counts) —
zero-shot, and one-shot with a candidate's full text in front: the candidate's tokens (as
``tokenizer(text)`` gives them, special tokens included, never cut) followed by the anchor's. A candidate's golden score is the share of anchors whose one-shot score
is strictly greater than their zero-shot score (Nuggets runs one meta-optimisation
iteration, ``kv_iter = 1``, i.e. the demonstration's plain key/value cache).

Speed: zero-shot scores are computed once; each candidate is run through the model once
and its key/value cache is shared by batches of anchors (right-padded, explicit position
ids), instead of re-reading the candidate for every anchor (:func:`naive_one_shot`).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dslrun.operators.lm.losses import pack_by_length


def promptify(instruction: str, input: str, output: str) -> tuple[str, str]:
    """(query, query + answer) in Nuggets' ``sp`` prompt."""
    instruction, input, output = instruction.strip(), input.strip(), output.strip()
    if input:
        query = f"Instruction:\n{instruction}\nInput:\n{input}\nResponse:\n"
    else:
        query = f"Instruction:\n{instruction}\nResponse:\n"
    return query, query + output


@dataclass(frozen=True)
class Anchor:
    ids: list[int]
    start: int  # first answer token
    end: int  # one past the last answer token


ANCHOR_MAX_TOKENS = 200  # Nuggets' TokenizedForGenRightPad.max_length


def encode_anchor(tokenizer: Any, instruction: str, input: str, output: str,
                  max_tokens: int = ANCHOR_MAX_TOKENS) -> Anchor:
    query, full = promptify(instruction, input, output)
    ids = list(tokenizer(full, add_special_tokens=False)["input_ids"])[:max_tokens]
    start = max(1, len(tokenizer(query, add_special_tokens=False)["input_ids"]))
    return Anchor(ids, start, max(start, len(ids)))


def encode_demo(tokenizer: Any, instruction: str, input: str, output: str) -> list[int]:
    return list(tokenizer(promptify(instruction, input, output)[1])["input_ids"])


def _score_rows(logits: Any, ids: Any, anchors: Sequence[Anchor]) -> list[float]:
    out = []
    for r, a in enumerate(anchors):
        lp = logits[r, a.start - 1:a.end - 1].float().log_softmax(-1)
        out.append(lp.gather(-1, ids[r, a.start:a.end, None]).double().sum().item())
    return out


def answer_logprobs(model: Any, anchors: Sequence[Anchor], pad_id: int, demo: Sequence[int] = (),
                    token_budget: int = 2048, cache: Any = None) -> list[float]:
    """Summed answer log-probabilities of every anchor, after *demo* (its KV cache computed once)."""
    import torch

    device = next(model.parameters()).device
    n_demo = len(demo)
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    longest = n_demo + max((len(a.ids) for a in anchors), default=0)
    if limit and longest > limit:  # a demonstration is never cut: say so instead of an index error in the model
        raise ValueError(f"a demonstration ({n_demo} tokens) plus the longest anchor needs {longest} positions; "
                         f"the model has {limit}: use shorter anchors or samples, or a longer-context model")
    with torch.inference_mode():
        # transformers 5 calls the key/value cache `cache`; 4.x called it `past_key_values`
        cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        if n_demo and cache is None:
            out = model(input_ids=torch.tensor([list(demo)], device=device), use_cache=True)
            cache = out.get("cache", None) or out.get("past_key_values", None)
        scores = [0.0] * len(anchors)
        for group in pack_by_length([len(a.ids) for a in anchors], token_budget):
            rows = [anchors[i] for i in group]
            width = max(len(a.ids) for a in rows)
            ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
            mask = torch.zeros((len(rows), n_demo + width), dtype=torch.long, device=device)
            mask[:, :n_demo] = 1
            for r, a in enumerate(rows):
                ids[r, :len(a.ids)] = torch.tensor(a.ids, device=device)
                mask[r, n_demo:n_demo + len(a.ids)] = 1
            positions = (n_demo + torch.arange(width, device=device)).expand(len(rows), -1)
            kwargs: dict[str, Any] = {}
            if n_demo:
                past = copy.deepcopy(cache)  # the forward pass appends to it
                past.batch_repeat_interleave(len(rows))
                kwargs = {cache_arg: past, "use_cache": True}
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs).logits
            for i, s in zip(group, _score_rows(logits, ids, rows)):
                scores[i] = s
    return scores


def naive_one_shot(model: Any, anchors: Sequence[Anchor], demo: Sequence[int]) -> list[float]:
    """Reference: one forward pass over demo + anchor for every anchor, no cache, no batch."""
    import torch

    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for a in anchors:
            ids = torch.tensor([list(demo) + a.ids], device=device)
            logits = model(input_ids=ids, use_cache=False).logits
            shifted = Anchor(list(demo) + a.ids, a.start + len(demo), a.end + len(demo))
            out.append(_score_rows(logits, ids, [shifted])[0])
    return out


def golden_score(zero: Sequence[float], one: Sequence[float]) -> float:
    """Share of anchors where the one-shot score is strictly greater than the zero-shot one."""
    if len(zero) != len(one) or not zero:
        raise ValueError("golden score needs one zero-shot and one one-shot score per anchor")
    return sum(o > z for z, o in zip(zero, one)) / len(zero)
