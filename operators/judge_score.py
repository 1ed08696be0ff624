"""``judge-score``: one LLM rating per sample (AlpaGasus, DEITA complexity/quality, or your own prompt).

Named templates reproduce the published prompts and parsers byte for byte
(``operators/llm/prompts.py`` cites the sources). ``custom`` takes a template file
with ``{instruction}``, ``{input}``, ``{output}`` and a parser: ``first-line`` (a number
on the first line), ``regex`` (first group of ``pattern``), ``json`` (field ``key``) or
``expected-digit`` (DEITA's logprob-weighted 1–6).

A value outside the template's declared scale (``scale:`` for custom), or not finite, is
not a score: it gets the template's failure value and a reason (``out of scale: 99``).
That check runs in ``finish`` over cached values too, so the raw reply and its parsed
number stay cached and a re-run pays nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from dslrun.core.columns import FLOAT, LIST, STR, Columns
from dslrun.core.context import RunContext
from dslrun.core.params import ColumnName, InputPath, NoCache
from dslrun.operators.llm.base import LlmOperator, LlmParams
from dslrun.operators.llm.prompts import (
    DIGITS,
    JUDGES,
    Judge,
    ParseError,
    expected_digit,
    first_line_float,
    json_field,
    regex_float,
    scale_reason,
)
from dslrun.operators.registry import register


class JudgeParams(LlmParams):
    template: Literal["alpagasus", "alpagasus-helpfulness", "deita-complexity", "deita-quality", "custom"] = Field(
        description="a published judge, or custom (template_file + parser)")
    template_file: InputPath | None = Field(None, description="custom: the user message, with {instruction} "
                                                              "{input} {output}")
    system: str | None = Field(None, description="custom: a system message")
    parser: Literal["first-line", "regex", "json", "expected-digit"] | None = Field(
        None, description="custom: how to read the score (default first-line)")
    pattern: str | None = Field(None, description="regex parser: the pattern; its first group is the score")
    key: str | None = Field(None, description="json parser: the field holding the score")
    scale: Annotated[tuple[float, float] | None, NoCache()] = Field(
        None, description="custom: [low, high], the range a score must lie in (default: any finite number)")
    column: Annotated[str, ColumnName()] = Field("score", description="name of the score column")
    logprobs: bool | None = Field(None, description="ask for top logprobs (default: on for expected-digit)")
    top_logprobs: int = Field(20, ge=1, le=1000, description="how many first-token logprobs to ask for "
                                                             "(OpenAI allows 20; vLLM up to its --max-logprobs)")
    raw_prompt: bool | None = Field(None, description="send the prompt as plain text, without the chat template "
                                                      "(default: as the method does; DEITA yes): a local model "
                                                      "continues it, a server gets it at /v1/completions")
    multi_turn: Literal["first", "per_turn"] = Field(
        "first", description="first: one score per sample (first user turn, the assistant turns joined); "
                             "per_turn: one score per user turn, as DEITA scores ShareGPT, in a list column "
                             "(combine with dot(a, b) for DEITA's evol score)")

    @model_validator(mode="after")
    def _custom_needs_a_file(self) -> JudgeParams:
        if self.template == "custom" and not self.template_file:
            raise ValueError("template: custom needs template_file: a file with the user message")
        if self.template != "custom" and (self.template_file or self.parser or self.system or self.scale):
            raise ValueError(f"template_file, system, parser and scale are for template: custom; "
                             f"`{self.template}` has its own")
        if self.scale is not None and not self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale: [low, high] needs low <= high, got {list(self.scale)}")
        if self.parser == "regex" and not self.pattern:
            raise ValueError("parser: regex needs pattern: '...'")
        if self.parser == "json" and not self.key:
            raise ValueError("parser: json needs key: the field holding the score")
        return self


@register
class JudgeScore(LlmOperator[JudgeParams]):
    """An LLM's score per sample, with the raw reply cached and a reason for every unscored sample."""

    name = "judge-score"
    version = "1"

    @property
    def p(self) -> JudgeParams:
        assert isinstance(self.params, JudgeParams)
        return self.params

    def judge(self) -> Judge:
        p = self.p
        if p.template != "custom":
            return JUDGES[p.template]
        user = Path(p.template_file or "").read_text(encoding="utf-8")
        return Judge("custom", user, p.system, parser=p.parser or "first-line", scale=p.scale)

    @property
    def reason_column(self) -> str:  # type: ignore[override]
        return f"{self.p.column}_reason"

    def model_identity(self) -> str:
        base = super().model_identity()
        if self._judge.user_turn:  # the query holds the input since issue 17: new cache entries
            base += ":query=user-turn"
        opts = self.request_options()
        if opts.get("processed_logprobs"):
            base += ":scores=processed"
        if opts.get("raw") and self.p.backend != "local":  # was sent as chat messages before issue 18
            base += ":prompt=completion"
        if self.p.template != "custom":
            return base
        import hashlib

        return f"{base}:template-sha256={hashlib.sha256(self._judge.user.encode()).hexdigest()[:16]}"

    def output_columns(self, inputs: list[Columns]) -> Columns:
        cols = dict(inputs[0])
        cols.update({self.p.column: LIST if self.per_turn else FLOAT, f"{self.p.column}_reason": STR})
        return cols

    @property
    def per_turn(self) -> bool:
        return self.p.multi_turn == "per_turn"

    @property
    def sample_columns(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("instruction", "input", "output", "messages") if self.per_turn else ("instruction", "input", "output")

    def messages(self, sample: Mapping[str, Any]) -> list[dict[str, str]]:
        return self._judge.messages(sample)

    def calls(self, sample: Mapping[str, Any]) -> list[list[dict[str, str]]] | None:
        if not self.per_turn:
            return None
        return [self._judge.messages({"instruction": user, "input": "", "output": reply})
                for user, reply in user_turns(sample["messages"])]

    def combine(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        col = self.p.column
        for part in parts:  # a turn's value off the scale, or not finite, is not a score
            v = part.get(col)
            if v is not None and not part.get(f"{col}_reason") and (why := scale_reason(float(v), self._judge.scale)):
                part[col], part[f"{col}_reason"] = self._judge.on_failure, why
        reasons = [f"turn {k + 1}: {p[f'{col}_reason']}" for k, p in enumerate(parts) if p.get(f"{col}_reason")]
        return {col: [p.get(col) for p in parts] if parts else None,
                f"{col}_reason": "; ".join(reasons) if reasons else (None if parts else "no user turn")}

    @property
    def _judge(self) -> Judge:
        if not hasattr(self, "_judge_cache"):
            self._judge_cache = self.judge()
        return self._judge_cache

    def request_options(self) -> dict[str, Any]:
        j, p = self._judge, self.p
        opts: dict[str, Any] = {"temperature": j.temperature if p.temperature is None else p.temperature,
                                "max_tokens": p.max_tokens or j.max_tokens}
        if p.seed is not None:
            opts["seed"] = p.seed
        if p.logprobs if p.logprobs is not None else j.parser == "expected-digit":
            opts.update(logprobs=True, top_logprobs=p.top_logprobs)
            if p.backend == "local":
                opts["logprob_tokens"] = list(DIGITS)
                if j.parser == "expected-digit":  # DEITA reads generate()'s processed scores
                    opts["processed_logprobs"] = True
        if j.raw if p.raw_prompt is None else p.raw_prompt:
            opts["raw"] = True
        return opts

    def parse(self, reply: Any) -> dict[str, Any]:
        j, p, col = self._judge, self.p, self.p.column
        if j.parser == "first-line":
            score = first_line_float(reply.text)
        elif j.parser == "expected-digit":
            score, _how = expected_digit(reply.top_logprobs, reply.text)
        elif j.parser == "regex":
            score = regex_float(reply.text, p.pattern or "")
        else:
            value = json_field(reply.text, p.key or "")
            try:
                score = float(value)
            except (TypeError, ValueError):
                raise ParseError(f"field {p.key!r} is {value!r}, not a number") from None
        return {col: score, f"{col}_reason": None}

    def unparsed(self, reply_text: str, error: str) -> dict[str, Any]:
        return {self.p.column: self._judge.on_failure, f"{self.p.column}_reason": f"unparsable reply: {error}"}

    def failed(self, reason: str) -> dict[str, Any]:
        return {self.p.column: None, f"{self.p.column}_reason": reason}

    def finish(self, table: Any, ctx: RunContext) -> Any:
        """Values off the template's scale, or not finite, become the failure value with a reason."""
        import numpy as np

        col, rcol, j = self.p.column, self.reason_column, self._judge
        scores, reasons = table.column(col), table.column(rcol)
        if self.per_turn:  # a list per sample: each turn's score is checked where it is combined
            return table
        bad = {i: why for i, (v, r) in enumerate(zip(scores, reasons, strict=True))
               if r is None and (why := scale_reason(float(v), j.scale)) is not None}
        if not bad:
            return table
        scores, reasons = np.array(scores, dtype=np.float64), reasons.copy()
        for i, why in bad.items():
            scores[i] = np.nan if j.on_failure is None else j.on_failure
            reasons[i] = why
        return table.with_columns({col: scores, rcol: reasons})

def user_turns(messages: Any) -> list[tuple[str, str]]:
    """(user turn, the assistant reply after it or "") for every user turn, as DEITA's
    ``score_pipeline._load_sharegpt`` pairs a conversation (system messages are not scored)."""
    msgs = [m for m in (messages or []) if m.get("role") != "system"]
    out = []
    for i, m in enumerate(msgs):
        if m.get("role") == "user":
            nxt = msgs[i + 1] if i + 1 < len(msgs) else None
            out.append((m.get("content", ""), nxt.get("content", "") if nxt and nxt.get("role") == "assistant" else ""))
    return out
