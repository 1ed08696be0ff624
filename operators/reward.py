"""``reward``: a reward model's score for each (question, response) pair.

MoDS filters its pool by the score of OpenAssistant's reward model
(``OpenAssistant/reward-model-deberta-v3-large-v2``), and Instruction-Mining uses the
same score as an indicator. As in their code, the question and the response are
given to the tokenizer as a text pair and the score is the first logit. The
question is the instruction, with the input on the next line when there is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

from dslrun.core.columns import FLOAT, Columns
from dslrun.core.context import RunContext
from dslrun.core.cost import Cost, Resource
from dslrun.core.params import ColumnName, NoCache, Params
from dslrun.operators.base import SampleOperator
from dslrun.operators.registry import register
from dslrun.runtime.data.table import Table

DEFAULT_MODEL = "OpenAssistant/reward-model-deberta-v3-large-v2"


class RewardParams(Params):
    model: str = Field(DEFAULT_MODEL, description="a sequence-classification reward model: hub id or local folder")
    max_length: int = Field(512, ge=8, description="tokens kept per pair (the pair is truncated longest-first)")
    column: Annotated[str, ColumnName()] = Field("reward", description="output column")
    dtype: str = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    device: Annotated[str, NoCache()] = Field("auto", description="auto: CUDA when present, else CPU")


def questions(batch: Table) -> list[str]:
    return [ins + ("\n" + inp if inp else "") for ins, inp in zip(batch.column("instruction"), batch.column("input"))]


def reward_scores(model: Any, tokenizer: Any, pairs: list[tuple[str, str]], max_length: int) -> list[float]:
    """First logit per (question, answer) pair, in one padded forward pass."""
    import torch

    tokenizer.padding_side = "right"
    enc = tokenizer([q for q, _ in pairs], [a for _, a in pairs], return_tensors="pt", padding=True,
                    truncation="longest_first", max_length=max_length)
    enc = {k: v.to(model.device) for k, v in enc.items()}
    with torch.no_grad():
        logits = model(**enc).logits
    return logits[:, 0].float().cpu().tolist()


@register
class Reward(SampleOperator[RewardParams]):
    """A reward model's score of the response to the instruction (higher is better)."""

    name = "reward"
    version = "1"
    resource = Resource.MODEL

    def output_columns(self, inputs: list[Columns]) -> Columns:
        return {**inputs[0], self.params.column: FLOAT}

    def model_identity(self) -> str:
        from dslrun.runtime.models.resident import identity

        return identity(self.params.model, "causal-lm")

    def estimate(self, n_samples: int) -> Cost:
        return Cost(samples=n_samples, forward_passes=n_samples)

    def compute(self, batch: Table, ctx: RunContext) -> list[Mapping[str, Any]]:
        p = self.params
        model, tokenizer = ctx.models.reward_model(p.model, device=p.device, dtype=p.dtype)
        pairs = list(zip(questions(batch), batch.column("output")))
        return [{p.column: s} for s in reward_scores(model, tokenizer, pairs, p.max_length)]
