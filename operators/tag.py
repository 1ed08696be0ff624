"""``tag``: InsTag intention tags per sample, normalised across the pool; ``n_tags`` is its complexity.

The LLM's raw tags are cached per sample (``tags_raw``); normalisation needs the whole
pool (frequencies, merges), so it runs after, on every run, and costs no call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field

from dslrun.core.columns import INT, LIST, STR, Columns
from dslrun.core.context import RunContext
from dslrun.core.params import NoCache
from dslrun.operators.llm import tag_norm
from dslrun.operators.llm.base import LlmOperator, LlmParams
from dslrun.operators.llm.instag import instag_messages, parse_tags
from dslrun.operators.registry import register

Step = Literal["lower", "stem", "frequency", "semantic", "association"]


class TagParams(LlmParams):
    # Normalisation runs on the cached raw tags every time: its settings are not cache keys.
    normalize: Annotated[list[Step], NoCache()] = Field(["lower", "stem", "frequency"],
                                  description="normalisation steps, in order (see operators/llm/tag_norm.py)")
    alpha: Annotated[int, NoCache()] = Field(1, ge=1, description="frequency: drop tags seen in fewer samples than this (InsTag used "
                                            "a larger α on its 1M-sample pool)")
    merge_distance: Annotated[float, NoCache()] = Field(0.05, ge=0, le=2, description="semantic: merge tags closer than this cosine distance")
    encoder: Annotated[str, NoCache()] = Field("minilm-l6", description="semantic: the sentence encoder that embeds tags")
    assoc_min_count: Annotated[int, NoCache()] = Field(5, ge=1, description="association: co-occurrences needed to merge a pair")
    assoc_threshold: Annotated[float, NoCache()] = Field(0.9, gt=0, le=1, description="association: co-occurrences / count of the rarer tag")


@register
class Tag(LlmOperator[TagParams]):
    """InsTag: an LLM names each instruction's intentions; `tags` normalised, `n_tags` = complexity."""

    name = "tag"
    version = "1"
    produces = {"tags_raw": LIST, "tag_reason": STR}
    reason_column = "tag_reason"

    @property
    def p(self) -> TagParams:
        assert isinstance(self.params, TagParams)
        return self.params

    def output_columns(self, inputs: list[Columns]) -> Columns:
        return {**inputs[0], "tags_raw": LIST, "tags": LIST, "n_tags": INT, "tag_reason": STR}

    def messages(self, sample: Mapping[str, Any]) -> list[dict[str, str]]:
        return instag_messages(sample)

    def request_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"temperature": self.p.temperature or 0.0, "max_tokens": self.p.max_tokens or 512}
        if self.p.seed is not None:
            opts["seed"] = self.p.seed
        return opts

    def parse(self, reply: Any) -> dict[str, Any]:
        return {"tags_raw": parse_tags(reply.text), "tag_reason": None}

    def unparsed(self, reply_text: str, error: str) -> dict[str, Any]:
        return {"tags_raw": None, "tag_reason": f"unparsable reply: {error}"}

    def failed(self, reason: str) -> dict[str, Any]:
        return {"tags_raw": None, "tag_reason": reason}

    def finish(self, table: Any, ctx: RunContext) -> Any:
        raw = table.column("tags_raw")
        ok = [i for i, t in enumerate(raw) if t is not None]
        pool: list[list[str]] = [list(raw[i]) for i in ok]
        p = self.p
        for step in p.normalize:
            if step == "lower":
                pool = tag_norm.lower(pool)
            elif step == "stem":
                pool = tag_norm.stem(pool)
            elif step == "frequency":
                pool = tag_norm.frequency(pool, p.alpha)
            elif step == "semantic":
                encoder = ctx.models.sentence_encoder(p.encoder)
                pool = tag_norm.semantic(
                    pool, lambda texts, enc=encoder: enc.encode(texts, normalize_embeddings=True), p.merge_distance)
            else:
                pool = tag_norm.association(pool, p.assoc_min_count, p.assoc_threshold)
        tags: list[Any] = [None] * len(table)
        for i, t in zip(ok, pool, strict=True):
            tags[i] = t
        from dslrun.runtime.data.table import as_column

        return table.with_columns({"tags": as_column(tags, LIST),
                                   "n_tags": as_column([None if t is None else len(t) for t in tags], INT)})
