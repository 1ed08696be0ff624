"""``ifd``: instruction-following difficulty (Cherry LLM and Superfiltering) from a causal LM.

IFD compares how hard the response is to predict with and without the
instruction. The kernels in ``operators/lm/`` reproduce each paper's code; see
``operators/lm/ifd.py`` for the exact templates, truncation and validity rules.

Multi-turn samples follow dslrun's own rule, not an original's: neither Cherry LLM
(``data_analysis.py``; ``data_analysis_vic.py`` is the Vicuna *prompt* on single-turn
Alpaca rows) nor Superfiltering (``code_ifd/``) scores conversations. Each assistant
turn is scored after the conversation before it (``templates.conversation_pairs``) and
``multi_turn`` combines the turns: ``tokens`` pools summed losses, ``mean`` averages IFDs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field

from dslrun.core.columns import FLOAT, STR, Columns
from dslrun.core.context import RunContext
from dslrun.core.cost import Cost, Feasibility, Resource
from dslrun.core.params import NoCache, Params
from dslrun.operators.base import SampleOperator
from dslrun.operators.registry import register
from dslrun.runtime.data.table import Table

COLUMNS: Columns = {"ifd": FLOAT, "ppl_conditioned": FLOAT, "ppl_direct": FLOAT, "loss_conditioned": FLOAT,
                    "loss_direct": FLOAT, "ifd_reason": STR}
DEFAULT_TEMPLATE = {"cherry": "alpaca", "superfiltering": "superfiltering"}


class IfdParams(Params):
    variant: Literal["cherry", "superfiltering"] = Field(
        description="cherry: ratio of mean losses, Alpaca template, IFD > 1 invalid; "
                    "superfiltering: ratio of perplexities, plain template, valid only when IFD < 1")
    model: str = Field("smollm2-135m", description="alias, local folder, .gguf file or hub id of a causal LM")
    template: str | None = Field(None, description="alpaca, superfiltering, vicuna, wizardlm, chat, or a template "
                                                   "file (default: the variant's own)")
    max_length: int | None = Field(None, ge=8, description="token limit of the conditioned text "
                                                            "(default: 512 cherry, 1024 superfiltering)")
    multi_turn: Literal["tokens", "mean"] = Field("tokens", description="how assistant turns combine: "
                                                  "token-weighted losses, or the mean of per-turn IFDs")
    dtype: str = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    device: Annotated[str, NoCache()] = Field("auto", description="auto: CUDA when present, else CPU")


@register
class Ifd(SampleOperator[IfdParams]):
    """IFD, both perplexities and both mean losses per sample, with a reason for every invalid one."""

    name = "ifd"
    version = "2"  # 2: Cherry's long-sample cut and skip (issue 17)
    resource = Resource.MODEL
    produces = COLUMNS

    def model_identity(self) -> str:
        from dslrun.runtime.models.resident import identity

        return identity(self.params.model, "causal-lm")

    def estimate(self, n_samples: int) -> Cost:
        return Cost(samples=n_samples, forward_passes=2 * n_samples)

    def feasibility(self) -> Feasibility:
        # Cherry measures difficulty with the pending fine-tune model itself; Superfiltering
        # shows a small proxy's IFD transfers to larger models (weak-to-strong).
        return Feasibility(labels=True, llm_uses=1, uses_pfm=self.params.variant == "cherry", model=self.params.model)

    def compute(self, batch: Table, ctx: RunContext) -> list[Mapping[str, Any]]:
        from dslrun.operators.lm.ifd import ifd_conversations, ifd_scores
        from dslrun.operators.lm.templates import get_template

        p = self.params
        model, tokenizer = ctx.models.causal_lm(p.model, device=p.device, dtype=p.dtype)
        template = get_template(p.template or DEFAULT_TEMPLATE[p.variant], tokenizer)
        kw: dict[str, Any] = {"variant": p.variant, "max_length": p.max_length}
        if p.variant == "cherry":
            prefix = template.direct_prefix
            kw["direct_prefix"] = prefix() if callable(prefix) else prefix
        multi = [i for i, n in enumerate(batch.column("n_turns")) if n > 1]
        single = sorted(set(range(len(batch))) - set(multi))
        scores: dict[int, Any] = {}
        if single:
            ins, inp, out = (batch.column(c) for c in ("instruction", "input", "output"))
            prompts = [template.render(ins[i], inp[i]) for i in single]
            for i, s in zip(single, ifd_scores(model, tokenizer, prompts, [out[i] for i in single], **kw)):
                scores[i] = s
        if multi:
            convs = [template.prompts(batch.column("messages")[i]) for i in multi]
            for i, s in zip(multi, ifd_conversations(model, tokenizer, convs, rule=p.multi_turn, **kw)):
                scores[i] = s
        return [_row(scores[i]) for i in range(len(batch))]


def _row(s: Any) -> dict[str, Any]:
    return {"ifd": s.ifd, "ppl_conditioned": s.ppl_conditioned, "ppl_direct": s.ppl_direct,
            "loss_conditioned": s.loss_conditioned, "loss_direct": s.loss_direct, "ifd_reason": s.reason}
