"""``judge-score``: one LLM rating per sample (AlpaGasus, DEITA complexity/quality, or your own prompt).

Named templates reproduce the published prompts and parsers byte for byte
(``operators/llm/prompts.py`` cites the sources). ``custom`` takes a template file
with ``{instruction}``, ``{input}``, ``{output}`` and a parser: ``first-line`` (a number
on the first line), ``regex`` (first group of ``pattern``), ``json`` (field ``key``) or
``expected-digit`` (DEITA's logprob-weighted 1–6).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from dslrun.core.columns import FLOAT, STR, Columns
from dslrun.core.params import ColumnName, InputPath
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
    column: Annotated[str, ColumnName()] = Field("score", description="name of the score column")
    logprobs: bool | None = Field(None, description="ask for top logprobs (default: on for expected-digit)")
    top_logprobs: int = Field(20, ge=1, le=1000, description="how many first-token logprobs to ask for "
                                                             "(OpenAI allows 20; vLLM up to its --max-logprobs)")
    raw_prompt: bool | None = Field(None, description="local backend: send the prompt without the chat template "
                                                      "(default: as the method does; DEITA yes). Servers always "
                                                      "get chat messages")

    @model_validator(mode="after")
    def _custom_needs_a_file(self) -> JudgeParams:
        if self.template == "custom" and not self.template_file:
            raise ValueError("template: custom needs template_file: a file with the user message")
        if self.template != "custom" and (self.template_file or self.parser or self.system):
            raise ValueError(f"template_file, system and parser are for template: custom; "
                             f"`{self.template}` has its own")
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
        return Judge("custom", user, p.system, parser=p.parser or "first-line")

    def model_identity(self) -> str:
        base = super().model_identity()
        if self.p.template != "custom":
            return base
        import hashlib

        return f"{base}:template-sha256={hashlib.sha256(self._judge.user.encode()).hexdigest()[:16]}"

    def output_columns(self, inputs: list[Columns]) -> Columns:
        cols = dict(inputs[0])
        cols.update({self.p.column: FLOAT, f"{self.p.column}_reason": STR})
        return cols

    def messages(self, sample: Mapping[str, Any]) -> list[dict[str, str]]:
        return self._judge.messages(sample)

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
        if (j.raw if p.raw_prompt is None else p.raw_prompt) and p.backend == "local":
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
