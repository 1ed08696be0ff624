"""IFD (instruction-following difficulty) of (prompt, response) pairs, two published variants.

Both score the response twice — after the prompt (*conditioned*) and without it
(*direct*). Texts are tokenised whole, as the original scripts do (see
:func:`ifd_sequences`), so a token spanning the prompt/response boundary is handled
the same way; the two counts of response tokens can then differ by one.

``cherry`` (Cherry LLM, ``cherry_seletion/data_analysis.py`` + ``data_by_IFD.py``):
  template Alpaca; direct text = ``direct_prefix + response`` (``'### Response:'`` for
  Alpaca, no space or newline); loss = mean response-token cross-entropy;
  **IFD = loss_conditioned / loss_direct** (a ratio of mean losses); max_length 512 for
  the conditioned text. Long samples follow the released scripts exactly: with
  ``P = min(prompt_tokens, max_length)``, a prompt with ``P >= max_length`` is skipped;
  the direct text is cut to ``max_length - P + slack`` tokens (slack 4 after
  ``'### Response:'``, 6 after ``'ASSISTANT:'``, the original's constants; for any other
  prefix, the prefix's own token count); a sample whose scored direct tokens ``n`` give
  ``P + n > max_length`` is skipped (``longer than max_length (Cherry skips it)``). With a
  tokenizer that adds a BOS the slack equals the prefix's tokens and the skip never fires
  (the response is scored truncated); without one (GPT-2, SmolLM2) every sample whose
  response is cut is skipped. **IFD > 1 is invalid** (== 1 kept).

``superfiltering`` (Superfiltering, ``code_ifd/data_analysis.py`` + ``put_analysis_to_data.py``
+ ``select_data.py``): template ``"{instruction}\\n{input}\\n"`` / ``"{instruction}\\n"``; direct
text = the response alone, cut to ``max_length - prompt_tokens + 1`` tokens and scored like
``labels=input_ids`` (a tokenizer without BOS leaves the first response token unscored);
**IFD = ppl_conditioned / ppl_direct**; max_length 1024; **valid only when IFD < 1**.

A sample that cannot be scored keeps ``ifd=None`` and says why in ``reason``; a scored but
invalid one keeps its numbers and gets a reason too. Nothing is dropped silently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .losses import Padding, TokenScores, encode, score_in_batches, special_prefix, with_prefix
from .templates import ALPACA, SUPERFILTERING, PromptTemplate


@dataclass(frozen=True)
class Variant:
    name: str
    template: PromptTemplate
    max_length: int
    ratio: str  # "loss": loss_c / loss_d; "ppl": ppl_c / ppl_d
    max_valid: float  # IFD above this is invalid ...
    inclusive: bool  # ... and so is IFD == max_valid when not inclusive


VARIANTS = {
    "cherry": Variant("cherry", ALPACA, 512, "loss", 1.0, inclusive=True),
    "superfiltering": Variant("superfiltering", SUPERFILTERING, 1024, "ppl", 1.0, inclusive=False),
}


@dataclass(frozen=True)
class IFDScore:
    ifd: float | None
    ppl_conditioned: float | None
    ppl_direct: float | None
    loss_conditioned: float | None
    loss_direct: float | None
    reason: str | None  # None when valid
    n_conditioned: int = 0  # scored response tokens
    n_direct: int = 0
    nll_conditioned: float = 0.0  # summed, for pooling turns
    nll_direct: float = 0.0

    @property
    def valid(self) -> bool:
        return self.reason is None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _unscored(reason: str) -> IFDScore:
    return IFDScore(None, None, None, None, None, reason)


def _exp(x: float) -> float:
    return math.exp(x) if x < 709 else math.inf


def finish(variant: Variant, nll_c: float, n_c: int, nll_d: float, n_d: int) -> IFDScore:
    """IFD, perplexities and validity from summed NLLs and token counts."""
    loss_c, loss_d = nll_c / n_c, nll_d / n_d
    ppl_c, ppl_d = _exp(loss_c), _exp(loss_d)
    num, den = (loss_c, loss_d) if variant.ratio == "loss" else (ppl_c, ppl_d)
    ifd = num / den if den else math.inf
    if variant.inclusive:
        reason = f"ifd > {variant.max_valid:g}" if ifd > variant.max_valid else None
    else:
        reason = f"ifd >= {variant.max_valid:g}" if ifd >= variant.max_valid else None
    return IFDScore(ifd, ppl_c, ppl_d, loss_c, loss_d, reason, n_c, n_d, nll_c, nll_d)


def ifd_sequences(tokenizer: Any, prompts: Sequence[str], responses: Sequence[str], variant: Variant,
                  max_length: int, direct_prefix: str) -> list[tuple | str]:
    """Per sample: ``(cond_ids, cond_start, direct_ids, direct_start)`` or a reason string.

    Tokenised as the original scripts do: each text is encoded whole (so a token may span
    the prompt/response boundary, e.g. ``:"``), and scoring starts at the length of the
    encoded text before the response (``len(encode(text[:text.rfind(response)]))``).
    """
    bos = special_prefix(tokenizer)
    heads = [with_prefix(bos, p) for p in encode(tokenizer, prompts)]
    wholes = [with_prefix(bos, w) for w in encode(tokenizer, [p + r for p, r in zip(prompts, responses, strict=True)])]
    if variant.name == "cherry":
        d_start = len(with_prefix(bos, encode(tokenizer, [direct_prefix])[0] if direct_prefix else []))
        directs = encode(tokenizer, [direct_prefix + r for r in responses])
    else:
        d_start = len(bos)
        directs = encode(tokenizer, responses)
    d_start = max(d_start, 1)
    out: list[tuple | str] = []
    for text, head, whole, direct in zip(responses, heads, wholes, directs, strict=True):
        direct = with_prefix(bos, direct)
        n_prompt = min(len(head), max_length)  # both originals encode the prompt with truncation
        room = max_length - n_prompt
        if not text:
            out.append("empty response")
            continue
        if variant.name == "cherry":
            if room <= 0:
                out.append(f"prompt too long: {len(head)} tokens leave no room in max_length "
                           f"{max_length} (Cherry skips it)")
                continue
            direct = direct[:room + cherry_slack(direct_prefix, d_start)]
        else:
            direct = direct[:room + 1]
        cond = whole[:max_length]
        if len(cond) <= len(head):
            out.append(f"response truncated away by max_length {max_length} "
                       f"(prompt has {len(head)} tokens)")
        elif len(direct) <= d_start:
            out.append("no response token left to score in the direct text (a single-token response "
                       "with no BOS token or direct prefix, or truncated away)")
        elif variant.name == "cherry" and len(head) + len(direct) - d_start > max_length:
            out.append(f"longer than max_length (Cherry skips it): {len(head)} prompt tokens + "
                       f"{len(direct) - d_start} direct response tokens > {max_length}")
        else:
            out.append((cond, len(head), direct, d_start))
    return out


# Cherry LLM's slack on the direct text's cut, per response header (``data_analysis.py``:
# 4 for '### Response:', ``data_analysis_vic.py``: 6 for 'ASSISTANT:'): LLaMA's token count
# of the header with its BOS.
CHERRY_SLACK = {"### Response:": 4, "ASSISTANT:": 6}


def cherry_slack(direct_prefix: str, prefix_tokens: int) -> int:
    """The original's constant for its own headers; for another header its token count, the
    quantity the constants stand for."""
    return CHERRY_SLACK.get(direct_prefix, prefix_tokens)


def ifd_scores(model: Any, tokenizer: Any, prompts: Sequence[str], responses: Sequence[str], *,
               variant: str = "cherry", max_length: int | None = None,
               direct_prefix: str | None = None, batch_size: int | None = None,
               token_budget: int | None = None, padding_side: Padding = "left") -> list[IFDScore]:
    """IFD of each (rendered prompt, response) pair; see the module doc for the two variants.

    *direct_prefix* defaults to the variant's template prefix (``'### Response:'`` for
    cherry); pass the prefix of the template the prompts were rendered with. The
    conditioned texts and the direct texts are scored in separate forward passes, packed
    as :func:`.losses.score_in_batches` does (*batch_size* rows, or *token_budget* tokens).
    """
    if len(prompts) != len(responses):
        raise ValueError("prompts and responses differ in length")
    v = VARIANTS[variant]
    length = max_length or v.max_length
    prefix = v.template.direct_prefix if direct_prefix is None else direct_prefix
    if v.name != "cherry":
        prefix = ""
    plans = ifd_sequences(tokenizer, prompts, responses, v, length, prefix)
    todo = [plan for plan in plans if isinstance(plan, tuple)]
    # Conditioned and direct texts differ a lot in length: separate passes pad less.
    cond, direct = (
        iter(score_in_batches(model, tokenizer, [t[k] for t in todo], [t[k + 1] for t in todo],
                              batch_size=batch_size, token_budget=token_budget,
                              padding_side=padding_side))
        for k in (0, 2))
    out = []
    for plan in plans:
        if isinstance(plan, str):
            out.append(_unscored(plan))
            continue
        c, d = next(cond), next(direct)
        out.append(finish(v, -c.sum_logprob, c.n_tokens, -d.sum_logprob, d.n_tokens))
    return out


def aggregate_turns(turns: Sequence[IFDScore], variant: str = "cherry", rule: str = "tokens") -> IFDScore:
    """One score for a multi-turn sample from its assistant turns' scores.

    Turns that could not be scored (empty, truncated away) are left out. ``rule="tokens"``
    (default) pools the turns: loss = total NLL / total scored tokens, per condition, then
    IFD and validity as for one turn — the loss a fine-tune on all assistant turns sees.
    ``rule="mean"``: unweighted means over turns of IFD, losses and perplexities; validity
    is then judged on the mean IFD.
    """
    v = VARIANTS[variant]
    scored = [t for t in turns if t.n_conditioned and t.n_direct]
    if not scored:
        first = next((t.reason for t in turns if t.reason), None)
        return _unscored(f"no scorable assistant turn ({first})" if first else "no assistant turn")
    nll_c, n_c = sum(t.nll_conditioned for t in scored), sum(t.n_conditioned for t in scored)
    nll_d, n_d = sum(t.nll_direct for t in scored), sum(t.n_direct for t in scored)
    pooled = finish(v, nll_c, n_c, nll_d, n_d)
    if rule == "tokens":
        return pooled
    if rule != "mean":
        raise ValueError(f"rule must be 'tokens' or 'mean', not {rule!r}")
    k = len(scored)

    def mean(field: str) -> float:
        return sum(getattr(t, field) for t in scored) / k

    ifd = mean("ifd")
    too_high = ifd > v.max_valid if v.inclusive else ifd >= v.max_valid
    reason = (f"ifd {'>' if v.inclusive else '>='} {v.max_valid:g}") if too_high else None
    return IFDScore(ifd, mean("ppl_conditioned"), mean("ppl_direct"), mean("loss_conditioned"),
                    mean("loss_direct"), reason, n_c, n_d, nll_c, nll_d)


def ifd_conversations(model: Any, tokenizer: Any, conversations: Sequence[Sequence[tuple[str, str]]],
                      *, variant: str = "cherry", rule: str = "tokens", **kwargs: Any) -> list[IFDScore]:
    """IFD of multi-turn samples given as (prompt, response) pairs per assistant turn
    (:func:`.templates.conversation_pairs`), aggregated with :func:`aggregate_turns`."""
    flat = [pair for conv in conversations for pair in conv]
    turn_scores = ifd_scores(model, tokenizer, [p for p, _ in flat], [r for _, r in flat],
                             variant=variant, **kwargs)
    out, k = [], 0
    for conv in conversations:
        out.append(aggregate_turns(turn_scores[k:k + len(conv)], variant, rule))
        k += len(conv)
    return out


__all__ = ["IFDScore", "TokenScores", "VARIANTS", "Variant", "aggregate_turns", "finish",
           "ifd_conversations", "ifd_scores", "ifd_sequences"]
