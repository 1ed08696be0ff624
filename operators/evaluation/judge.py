"""Pairwise judging as in the IFD (Cherry LLM) and AlpaGasus evaluations.

The judge sees a question and two answers and writes both scores (1–10) on its first
line, then an explanation. Every pair is judged twice, once with each answer first, to
cancel position bias. The prompt, the score parser and the rule that combines the two
verdicts follow Cherry LLM's ``evaluation/generation/eval.py`` and
``review_eval_score.py`` (tianyi-lab/Cherry_LLM @ 01fac8d); AlpaGasus uses the same
review prompt (FastChat's). Here the SEM's answer is "Answer1" of the original files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REVIEW_SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
REVIEW_CRITERIA = (
    "We would like to request your feedback on the performance of two AI assistants in response to the "
    "user question displayed above.\nPlease rate the helpfulness, relevance, accuracy, level of details of "
    "their responses. Each assistant receives an overall score on a scale of 1 to 10, where a higher score "
    "indicates better overall performance.\nPlease first output a single line containing only two values "
    "indicating the scores for Assistant 1 and 2, respectively. The two scores are separated by a space. In "
    "the subsequent line, please provide a comprehensive explanation of your evaluation, avoiding any "
    "potential bias and ensuring that the order in which the responses were presented does not affect your "
    "judgment."
)
REVIEW_TEMPLATE = (
    "[Question]\n{question}\n\n[The Start of Assistant 1's Answer]\n{answer_1}\n\n"
    "[The End of Assistant 1's Answer]\n\n[The Start of Assistant 2's Answer]\n{answer_2}\n\n"
    "[The End of Assistant 2's Answer]\n\n[System]\n{criteria}\n\n"
)
# The original scores an unreadable review [-1, -1]: equal scores, so it can only make a tie.
UNPARSED = (-1.0, -1.0)
OUTCOMES = ("win", "tie", "loss")


class ReviewParseError(ValueError):
    """The first line of a review does not hold exactly two numbers."""


def review_messages(question: str, answer_1: str, answer_2: str) -> list[dict[str, str]]:
    user = REVIEW_TEMPLATE.format(question=question, answer_1=answer_1, answer_2=answer_2,
                                  criteria=REVIEW_CRITERIA)
    return [{"role": "system", "content": REVIEW_SYSTEM}, {"role": "user", "content": user}]


def parse_review(review: str) -> tuple[float, float]:
    """The two scores on the first line: commas count as spaces, exactly two fields (as the original)."""
    first = review.split("\n")[0].replace(",", " ")
    parts = first.split(" ")
    if len(parts) != 2:
        raise ReviewParseError(f"expected two scores on the first line, got {first[:80]!r}")
    try:
        a, b = float(parts[0]), float(parts[1])
    except ValueError:
        raise ReviewParseError(f"the first line is not two numbers: {first[:80]!r}") from None
    if math.isnan(a) or math.isnan(b):
        raise ReviewParseError(f"NaN score on the first line: {first[:80]!r}")
    return a, b


def parse_review_or_unparsed(review: str) -> tuple[tuple[float, float], str | None]:
    try:
        return parse_review(review), None
    except ReviewParseError as e:
        return UNPARSED, str(e)


def combine(scores: Sequence[float], scores_reverse: Sequence[float]) -> str:
    """The SEM's outcome from both orders. ``scores`` = (SEM, other) with the SEM shown first;
    ``scores_reverse`` = (other, SEM) with the other shown first.

    Win: higher in both orders, or higher in one and equal in the other; loss symmetrically;
    tie otherwise (equal in both, or each ahead in one order).
    """
    first = _sign(scores[0] - scores[1])
    second = _sign(scores_reverse[1] - scores_reverse[0])
    total = first + second
    if first * second < 0 or total == 0:
        return "tie"
    return "win" if total > 0 else "loss"


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


@dataclass
class Tally:
    win: int = 0
    tie: int = 0
    loss: int = 0

    def add(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    @property
    def n(self) -> int:
        return self.win + self.tie + self.loss

    @property
    def winning_score(self) -> float:
        """(wins − losses) / N + 1: 1 is parity with the counterpart, 2 wins every pair."""
        return (self.win - self.loss) / self.n + 1 if self.n else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {"win": self.win, "tie": self.tie, "loss": self.loss, "n": self.n,
                "winning_score": self.winning_score}


@dataclass
class PairwiseResult:
    """Wins/ties/losses of the SEM per evaluation set and in total."""

    per_set: dict[str, Tally] = field(default_factory=dict)
    unparsed: int = 0

    def add(self, setting: str, outcome: str) -> None:
        self.per_set.setdefault(setting, Tally()).add(outcome)

    @property
    def total(self) -> Tally:
        t = Tally()
        for s in self.per_set.values():
            t.win, t.tie, t.loss = t.win + s.win, t.tie + s.tie, t.loss + s.loss
        return t

    def as_dict(self) -> dict[str, Any]:
        return {"per_set": {k: v.as_dict() for k, v in self.per_set.items()}, "total": self.total.as_dict(),
                "unparsed_reviews": self.unparsed}


def aggregate(rows: Iterable[Mapping[str, Any]]) -> PairwiseResult:
    """Rows with ``setting``, ``scores`` (SEM first) and ``scores_reverse`` (other first)."""
    result = PairwiseResult()
    for r in rows:
        result.add(r["setting"], combine(r["scores"], r["scores_reverse"]))
        result.unparsed += int(bool(r.get("unparsed")))
    return result


def load_review_file(path: str | Path, reparse: bool = True) -> list[dict[str, Any]]:
    """A Cherry LLM ``*_reviews_*.json`` file as rows for :func:`aggregate`.

    With ``reparse`` the scores are read again from the raw ``review`` texts by
    :func:`parse_review`; otherwise the stored ``scores`` strings are used.
    """
    path = Path(path)
    wrapped = json.loads(path.read_text(encoding="utf-8"))
    setting = wrapped.get("Meta_Info", {}).get("dataset_name") or path.stem
    rows = []
    for item in wrapped["data"]:
        if reparse:
            (s, e1), (r, e2) = parse_review_or_unparsed(item["review"]), parse_review_or_unparsed(item["review_reverse"])
            unparsed = bool(e1 or e2)
        else:
            s, r, unparsed = tuple(json.loads(item["scores"])), tuple(json.loads(item["scores_reverse"])), False
        rows.append({"setting": setting, "scores": s, "scores_reverse": r, "unparsed": unparsed})
    return rows
