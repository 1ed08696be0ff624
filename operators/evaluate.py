"""``evaluate``: fine-tune the PFM on the subset and on its counterparts, judge them, place the recipe.

The selection's worth is what the fine-tuned model gains. ``evaluate`` fine-tunes the
pending fine-tune model (LoRA by default) on the selected subset (the SEM) and on each
counterpart — ``full`` (the whole pool: the BM), ``random`` (a seeded random subset of
the same size) or another step of the spec — generates answers to the evaluation prompts,
has a judge compare SEM and counterpart answers in both orders, and reports
wins/ties/losses, the winning score, PIR, SDF, held-out loss and the recipe's point on the
efficiency graph (``operators/evaluation/``). Given ``sem_answers`` and
``counterpart_answers`` it judges generations made elsewhere and trains nothing.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from dslrun.core.context import RunContext
from dslrun.core.cost import Cost, Resource, Stage
from dslrun.core.params import InputPath, OutputPath, Params, StepRef
from dslrun.operators.base import TableOperator
from dslrun.operators.llm.base import LlmParams
from dslrun.operators.registry import register
from dslrun.runtime.data.table import Table

SPECIAL = ("full", "random")


class JudgeSettings(LlmParams):
    """The judge's backend (any of the LLM operators': an OpenAI-compatible server or ``local``)."""


class EvaluateParams(Params):
    pool: StepRef | None = Field(None, description="the candidate pool step (for full/random counterparts and SDF)")
    counterparts: list[str] = Field(["random"], description="full (the whole pool), random (same size, seeded), "
                                                            "or names of other steps")
    pfm: str = Field("smollm2-135m", description="the pending fine-tune model: alias, folder, .gguf or hub id")
    eval: list[InputPath] = Field(default_factory=list, description="evaluation prompt sets (JSONL/JSON: "
                                  "vicuna/koala/wizardlm/sinstruct/lima test sets or {instruction, input})")
    eval_limit: int | None = Field(None, ge=1, description="prompts per evaluation set (default all)")
    judge: JudgeSettings = Field(default_factory=JudgeSettings, description="the pairwise judge: {backend, "
                                 "model, base_url, api_key_env, max_tokens, ...} as for judge-score")
    method: Literal["lora", "full"] = Field("lora", description="LoRA adapters (peft) or full fine-tuning")
    epochs: float = Field(3.0, gt=0)
    lr: float | None = Field(None, gt=0, description="default 2e-4 LoRA, 2e-5 full")
    batch_size: int = Field(16, ge=1, description="samples per optimiser step")
    micro_batch: int = Field(4, ge=1, description="samples per forward pass (gradient accumulation)")
    max_length: int = Field(512, ge=16, description="training tokens per sample")
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_targets: list[str] | None = Field(None, description="module names (default: peft's for the architecture)")
    template: str = Field("alpaca", description="prompt template shared with the selectors (alpaca, vicuna, chat, "
                                                "a file)")
    seed: int = Field(0, description="training, random counterpart and sampling seed")
    max_new_tokens: int = Field(256, ge=1, description="answer length limit")
    gen_batch: int = Field(8, ge=1, description="prompts per generation batch")
    temperature: float = Field(0.0, ge=0, description="0: greedy")
    heldout: InputPath | None = Field(None, description="a pool with reference outputs: held-out loss/perplexity")
    heldout_limit: int | None = Field(None, ge=1)
    benchmarks: list[str] = Field(default_factory=list, description="benchmark scorer plug-ins, 'module:function'"
                                  " called as f(model, tokenizer, template) -> {metric: score}, higher is better",
                                  json_schema_extra={"names_code": True})  # needs --allow-code (dsl/trust.py)
    sem_answers: InputPath | None = Field(None, description="judge these SEM answers ({instruction|prompt, "
                                                            "answer|response|output}) instead of training")
    counterpart_answers: InputPath | None = Field(None, description="... against these counterpart answers")
    out: OutputPath | None = Field(None, description="folder for results, generations, reviews and the graph "
                                                     "(default: the step's name)")
    device: str = Field("auto", description="auto: CUDA when present, else CPU")
    dtype: str = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")

    @model_validator(mode="after")
    def _consistent(self) -> EvaluateParams:
        if (self.sem_answers is None) != (self.counterpart_answers is None):
            raise ValueError("give both sem_answers and counterpart_answers, or neither")
        if self.sem_answers is None and not self.eval:
            raise ValueError("`eval` needs at least one evaluation prompt set")
        if self.sem_answers is None and not self.counterparts:
            raise ValueError("`counterparts` needs at least one of full, random or a step name")
        if any(c in SPECIAL for c in self.counterparts) and self.pool is None and self.sem_answers is None:
            raise ValueError("full and random counterparts need `pool: <the pool step>`")
        return self


@register
class Evaluate(TableOperator[EvaluateParams]):
    """Fine-tune SEM and counterparts, judge them pairwise, report W/T/L, PIR, SDF and the efficiency graph."""

    name = "evaluate"
    stage = Stage.EVALUATION  # not part of the selector: `dslrun explain` leaves it out
    version = "1"
    resource = Resource.MODEL

    @property
    def p(self) -> EvaluateParams:
        assert isinstance(self.params, EvaluateParams)
        return self.params

    def step_refs(self) -> list[str]:
        refs = [self.p.pool] if self.p.pool else []
        return refs + [c for c in self.p.counterparts if c not in SPECIAL and c not in refs]

    def env_vars(self) -> dict[str, str]:
        if self.p.judge.backend != "openai":
            return {}
        return {"judge": self.p.judge.api_key_env or "OPENAI_API_KEY"}

    def dry_run_cost(self, inputs: list[Table], ctx: RunContext) -> tuple[int, int, Cost]:
        """For ``dslrun plan``: one fine-tune per variant not yet trained (SEM and each counterpart;
        2 × epochs × samples forward+backward passes), one generation per evaluation prompt and
        variant, and the judge's two calls (both orders) per prompt and counterpart."""
        from dslrun.operators.evaluation import finetune as ft
        from dslrun.operators.evaluation.generate import load_eval_set
        from dslrun.operators.evaluation.runner import checkpoint_root, finetune_config, variants
        from dslrun.runtime.models.resident import identity

        p = self.p
        if p.sem_answers:  # judges answers made elsewhere: nothing to train or generate
            return 0, 0, Cost()
        tables = variants(self, inputs[0], ctx)
        cfg, model_id = finetune_config(self), identity(p.pfm, "causal-lm")
        prompts = sum(len(load_eval_set(f, p.eval_limit)) for f in p.eval)
        cost = Cost()
        for table in tables.values():
            key = ft.checkpoint_key(model_id, [str(i) for i in table.ids.tolist()], cfg)
            if ft.load_cached(checkpoint_root(ctx) / key) is None:
                cost.training_runs += 1
                cost.forward_passes += math.ceil(2 * p.epochs * len(table))
            cost.forward_passes += prompts
        judged = 2 * prompts * (len(tables) - 1)
        if p.judge.backend == "local":
            cost.forward_passes += judged
        else:
            cost.api_calls += judged
        cost.samples = sum(len(t) for t in tables.values())
        done = cost.training_runs == 0
        return cost.samples, cost.samples if done else 0, cost

    def run(self, inputs: list[Table], ctx: RunContext) -> Table:
        (table,) = inputs
        if ctx.dry_run:
            return table
        from dslrun.operators.evaluation.runner import run_evaluation

        results = run_evaluation(self, table, ctx)
        out = table.slice(0, len(table))  # same rows; its own meta, so the input's stays as it was
        out.meta["evaluate"] = results
        return out
