"""``perplexity``: how predictable a part of each sample is to a causal LM.

Instruction-Mining and MoDS use these as quality indicators. ``of`` chooses the
text: ``instruction`` (instruction and input), ``response`` (the response
alone), ``whole`` (instruction, input and response as one text), or
``response-given-instruction`` (the response after the rendered prompt).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field

from dslrun.core.columns import FLOAT, INT, Columns
from dslrun.core.context import RunContext
from dslrun.core.cost import Cost, Feasibility, Resource
from dslrun.core.params import ColumnName, NoCache, Params
from dslrun.operators.base import SampleOperator
from dslrun.operators.registry import register
from dslrun.runtime.data.table import Table

Part = Literal["instruction", "response", "whole", "response-given-instruction"]


class PerplexityParams(Params):
    of: Part = Field("response", description="which text: instruction, response, whole, response-given-instruction")
    model: str = Field("smollm2-135m", description="alias, local folder, .gguf file or hub id of a causal LM")
    template: str = Field("alpaca", description="prompt template for response-given-instruction")
    max_length: int = Field(1024, ge=8, description="tokens kept (the text is cut from the right)")
    column: Annotated[str | None, ColumnName()] = Field(None, description="output column name (default: ppl_<of>, hyphens as _)")
    dtype: str = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    device: Annotated[str, NoCache()] = Field("auto", description="auto: CUDA when present, else CPU")


def _joined(instruction: str, inp: str) -> str:
    return instruction + ("\n" + inp if inp else "")


@register
class Perplexity(SampleOperator[PerplexityParams]):
    """exp(mean token cross-entropy) of the chosen text, plus its token count."""

    name = "perplexity"
    version = "1"
    resource = Resource.MODEL

    @property
    def column(self) -> str:
        return self.params.column or "ppl_" + self.params.of.replace("-", "_")

    def output_columns(self, inputs: list[Columns]) -> Columns:
        cols = dict(inputs[0]) if inputs else {}
        cols.update({self.column: FLOAT, self.column + "_tokens": INT})
        return cols

    def model_identity(self) -> str:
        from dslrun.runtime.models.resident import identity

        return identity(self.params.model, "causal-lm")

    def estimate(self, n_samples: int) -> Cost:
        return Cost(samples=n_samples, forward_passes=n_samples)

    def feasibility(self) -> Feasibility:
        return Feasibility(labels=True, llm_uses=1, model=self.params.model)

    def compute(self, batch: Table, ctx: RunContext) -> list[Mapping[str, Any]]:
        from dslrun.operators.lm.losses import response_logprobs
        from dslrun.operators.lm.templates import get_template

        p = self.params
        model, tokenizer = ctx.models.causal_lm(p.model, device=p.device, dtype=p.dtype)
        ins, inp, out = (list(batch.column(c)) for c in ("instruction", "input", "output"))
        if p.of == "instruction":
            prompts, texts = [""] * len(ins), [_joined(a, b) for a, b in zip(ins, inp)]
        elif p.of == "response":
            prompts, texts = [""] * len(out), out
        elif p.of == "whole":
            prompts, texts = [""] * len(out), [_joined(a, b) + "\n" + c for a, b, c in zip(ins, inp, out)]
        else:
            template = get_template(p.template, tokenizer)
            prompts, texts = [template.render(a, b) for a, b in zip(ins, inp)], out
        scores = response_logprobs(model, tokenizer, prompts, texts, p.max_length)
        return [{self.column: s.ppl, self.column + "_tokens": s.n_tokens} for s in scores]
