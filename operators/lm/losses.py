"""Per-sample token log-probabilities of a causal LM, batched, padding-independent.

The runtime decides batches; these functions score the batch they are given, and a
sample's result does not depend on its batch, its neighbours, the padding side or the
order (position ids are derived from the attention mask, every sample is reduced on
its own, in float32 with a float64 sum). Left padding is the default: every row's
response then ends at the last position, so with ``logits_to_keep`` only the response
positions are projected onto the vocabulary (right padding gives the same numbers, slower).

Tokenisation rule (shared with :mod:`.ifd`): prompt and response are tokenised
separately (``add_special_tokens=False``) and concatenated, so every condition scores
the very same response token ids; the tokenizer's own leading special tokens (BOS for
Llama-family tokenizers, nothing for GPT-2 / SmolLM2) are prepended, as
``tokenizer.encode`` does, unless the prompt text already starts with them (chat
templates). Only response tokens are scored. A token is scored given everything before
it, so with no BOS and an empty prompt the first token cannot be scored.

Heavy imports (torch) happen inside the functions.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Padding = str  # "right" | "left"


@dataclass(frozen=True)
class TokenScores:
    """Summed natural-log probability of the scored tokens and how many there were."""

    sum_logprob: float
    n_tokens: int

    @property
    def mean_nll(self) -> float | None:
        """Mean token cross-entropy (the ``loss`` of a causal LM), None with no token."""
        return -self.sum_logprob / self.n_tokens if self.n_tokens else None

    @property
    def ppl(self) -> float | None:
        loss = self.mean_nll
        return None if loss is None else math.exp(loss)


def special_prefix(tokenizer: Any) -> list[int]:
    """The special token ids ``tokenizer.encode`` puts before the text (e.g. ``[bos]``)."""
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    for k in range(len(with_special) - len(plain) + 1):
        if with_special[k:k + len(plain)] == plain:
            return list(with_special[:k])
    return []


def encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens (empty text → ``[]``)."""
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def with_prefix(prefix: list[int], ids: list[int]) -> list[int]:
    """*ids* with the special *prefix* in front, unless they already start with it."""
    return list(ids) if prefix and ids[:len(prefix)] == prefix else prefix + list(ids)


def _pad_id(tokenizer: Any) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if tid is not None:
            return int(tid)
    return 0


def score_sequences(model: Any, sequences: Sequence[Sequence[int]], starts: Sequence[int], *,
                    pad_token_id: int = 0, padding_side: Padding = "left") -> list[TokenScores]:
    """One forward pass over a padded batch; score tokens ``seq[start:]`` of each sequence.

    ``starts[i] >= 1`` (a token needs a context). Rows with nothing to score cost no
    logits. When the model's ``forward`` accepts ``logits_to_keep``, only the positions
    that some row needs are projected to the vocabulary.
    """
    import torch

    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', not {padding_side!r}")
    if len(sequences) != len(starts):
        raise ValueError("sequences and starts differ in length")
    results = [TokenScores(0.0, 0)] * len(sequences)
    rows = [i for i, (s, a) in enumerate(zip(sequences, starts, strict=True)) if len(s) > max(a, 1)]
    if not rows:
        return results
    seqs = [list(sequences[i]) for i in rows]
    heads = [max(int(starts[i]), 1) for i in rows]
    width = max(len(s) for s in seqs)
    device = next(model.parameters()).device
    ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    offsets = []
    for r, s in enumerate(seqs):
        off = 0 if padding_side == "right" else width - len(s)
        ids[r, off:off + len(s)] = torch.tensor(s, dtype=torch.long)
        mask[r, off:off + len(s)] = 1
        offsets.append(off)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    first_logit = min(off + a - 1 for off, a in zip(offsets, heads, strict=True))
    kwargs: dict[str, Any] = {}
    base = 0
    if first_logit > 0 and "logits_to_keep" in inspect.signature(model.forward).parameters:
        kwargs["logits_to_keep"] = width - first_logit
        base = first_logit
    with torch.inference_mode():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                       position_ids=positions.to(device), use_cache=False, **kwargs).logits
        for r, i in enumerate(rows):
            a, b = offsets[r] + heads[r], offsets[r] + len(seqs[r])
            row = logits[r, a - 1 - base:b - 1 - base].float().log_softmax(-1)
            target = ids[r, a:b].to(row.device)
            lp = row.gather(-1, target[:, None]).squeeze(-1).double().sum().item()
            results[i] = TokenScores(lp, b - a)
    return results


# Padded tokens per forward pass. A 2-core CPU peaks at a few hundred real tokens per
# pass (bench: 135M model, ~1.15k tok/s from 400 tokens on, half that for one 40-token
# sequence); a GPU wants thousands.
CPU_TOKEN_BUDGET = 1024
GPU_TOKEN_BUDGET = 16384
MAX_PADDING = 0.15  # share of a pass's tokens that may be padding


def default_token_budget(model: Any) -> int:
    device = next(model.parameters()).device
    return GPU_TOKEN_BUDGET if device.type == "cuda" else CPU_TOKEN_BUDGET


def pack_by_length(lengths: Sequence[int], token_budget: int, max_padding: float = MAX_PADDING) -> list[list[int]]:
    """Indices grouped into passes: sorted by length, a pass closed when one more row would
    make rows × longest exceed *token_budget* or its padding exceed *max_padding*."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i in order:
        n = lengths[i]
        if current:
            padded = (len(current) + 1) * n
            if padded > token_budget or padded - (total + n) > max_padding * padded:
                groups.append(current)
                current, total = [], 0
        current.append(i)
        total += n
    if current:
        groups.append(current)
    return groups


def score_in_batches(model: Any, tokenizer: Any, sequences: Sequence[Sequence[int]],
                     starts: Sequence[int], *, batch_size: int | None = None,
                     token_budget: int | None = None, padding_side: Padding = "left") -> list[TokenScores]:
    """:func:`score_sequences` over passes of similar length.

    With *batch_size*, consecutive chunks of that many sequences; otherwise sequences are
    packed by length under *token_budget* padded tokens per pass (default: by device).
    Results come back in input order and do not depend on the grouping.
    """
    if batch_size:
        groups = [list(range(k, min(k + batch_size, len(sequences)))) for k in range(0, len(sequences), batch_size)]
    else:
        groups = pack_by_length([len(s) for s in sequences], token_budget or default_token_budget(model))
    out: list[TokenScores] = [TokenScores(0.0, 0)] * len(sequences)
    for group in groups:
        scores = score_sequences(model, [sequences[i] for i in group], [starts[i] for i in group],
                                 pad_token_id=_pad_id(tokenizer), padding_side=padding_side)
        for i, s in zip(group, scores, strict=True):
            out[i] = s
    return out


def response_logprobs(model: Any, tokenizer: Any, prompts: Sequence[str], responses: Sequence[str],
                      max_length: int | None = None, *, batch_size: int | None = None,
                      padding_side: Padding = "left") -> list[TokenScores]:
    """Summed log-prob and count of each response's tokens given its prompt.

    The sequence ``[BOS] + prompt + response`` is cut to *max_length* tokens from the right
    (the response goes first, as ``tokenizer(..., truncation=True)`` does). Use an empty
    prompt for the perplexity of a whole text (instruction alone, response alone, both).
    """
    if len(prompts) != len(responses):
        raise ValueError("prompts and responses differ in length")
    bos = special_prefix(tokenizer)
    seqs, starts = [], []
    for p, r in zip(encode(tokenizer, prompts), encode(tokenizer, responses), strict=True):
        head = with_prefix(bos, p)
        seq = head + r
        seqs.append(seq[:max_length] if max_length else seq)
        starts.append(max(len(head), 1))
    return score_in_batches(model, tokenizer, seqs, starts, batch_size=batch_size,
                            padding_side=padding_side)


def response_losses(model: Any, tokenizer: Any, prompts: Sequence[str], responses: Sequence[str],
                    max_length: int | None = None, *, batch_size: int | None = None,
                    padding_side: Padding = "left") -> list[float | None]:
    """Mean response-token cross-entropy per sample (None when no response token is left)."""
    return [s.mean_nll for s in response_logprobs(model, tokenizer, prompts, responses, max_length,
                                                  batch_size=batch_size, padding_side=padding_side)]
