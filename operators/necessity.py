"""``necessity``: MoDS's necessity stage — how well a model tuned on the seeds already answers each sample.

MoDS (Du et al., "MoDS: Model-oriented Data Selection for Instruction Tuning", 2023)
selects in three stages: a quality filter (a reward model's score), k-center seeds for
coverage, then *necessity*: fine-tune the model on the seeds, let it answer every
high-quality instruction, score its answers with the reward model, and add the
instructions it still answers badly (score below a threshold), again by k-center.

This operator does the middle of the third stage for the rows of its input: fine-tune
``pfm`` on the ``seeds`` step (LoRA by default; the checkpoint is cached by model, seed
ids and hyper-parameters), answer each instruction greedily, and score the answer
(``necessity_answer``, ``necessity_score``). Answers and scores are cached per sample
under keys that hold the checkpoint, so a re-run trains, generates and scores nothing
twice. ``scorer: reward`` is MoDS's reward model; ``scorer: deita-quality`` is an
offline stand-in: DEITA's quality expectation (1–6) from a local causal LM.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field

from dslrun.core.columns import FLOAT, STR, Columns
from dslrun.core.context import RunContext
from dslrun.core.cost import Cost, Feasibility, Resource
from dslrun.core.params import NoCache, Params, StepRef
from dslrun.operators.base import P, TableOperator
from dslrun.operators.influence.bound import BoundOperator
from dslrun.operators.registry import register
from dslrun.operators.reward import DEFAULT_MODEL as REWARD_MODEL
from dslrun.runtime.data.table import Table

ANSWER, SCORE = "necessity_answer", "necessity_score"


class NecessityParams(Params):
    seeds: StepRef = Field(description="the step whose samples the model is first fine-tuned on")
    pfm: str = Field("smollm2-135m", description="the pending fine-tune model")
    scorer: Literal["reward", "deita-quality"] = Field(
        "reward", description="reward: a reward model's score of the answer (MoDS); deita-quality: a local LM's "
                              "DEITA quality expectation 1-6 (offline stand-in)")
    scorer_model: str = Field(REWARD_MODEL, description="the reward model, or the causal LM for deita-quality")
    method: Literal["lora", "full"] = "lora"
    epochs: float = Field(3.0, gt=0)
    lr: float | None = Field(None, gt=0, description="default 2e-4 LoRA, 2e-5 full")
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(512, ge=16)
    template: str = Field("alpaca", description="prompt template for training and answering")
    max_new_tokens: int = Field(256, ge=1)
    seed: int = 0
    dtype: str = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    device: Annotated[str, NoCache()] = Field("auto", description="auto: CUDA when present, else CPU")


class _Step(BoundOperator[P]):
    """A cached per-sample step inside ``necessity``; its state is the function that computes a batch."""

    def compute(self, batch: Table, ctx: RunContext) -> list[Mapping[str, Any]]:
        return self.state(batch, ctx)


class AnswerParams(Params):
    template: str
    max_new_tokens: int


class ScoreParams(Params):
    scorer: str
    max_new_tokens: int


class Answers(_Step[AnswerParams]):
    name = "necessity-answer"
    version = "1"
    produces = {ANSWER: STR}


class Scores(_Step[ScoreParams]):
    name = "necessity-score"
    version = "1"
    produces = {SCORE: FLOAT}


@register
class Necessity(TableOperator[NecessityParams]):
    """Fine-tune the PFM on the seeds, answer each sample's instruction, score the answer (MoDS)."""

    name = "necessity"
    version = "1"
    resource = Resource.MODEL

    @property
    def p(self) -> NecessityParams:
        assert isinstance(self.params, NecessityParams)
        return self.params

    def step_refs(self) -> list[str]:
        return [self.p.seeds]

    def output_columns(self, inputs: list[Columns]) -> Columns:
        return {**inputs[0], ANSWER: STR, SCORE: FLOAT}

    def feasibility(self) -> Feasibility:
        # One LLM trained (on pool samples) and used to answer; the scorer is another use when it is an LLM.
        return Feasibility(labels=True, trained_llms=1, trains_on_pool=True, uses_pfm=True,
                           llm_uses=1 + (self.p.scorer == "deita-quality"), model=self.p.pfm)

    def dry_run_cost(self, inputs: list[Table], ctx: RunContext) -> tuple[int, int, Cost]:
        """For ``dslrun plan``: samples, scored ones, and the work left (a generation and a
        scoring pass per sample not yet answered or scored; the fine-tune, when not done)."""
        from dslrun.operators.evaluation import finetune as ft
        from dslrun.operators.evaluation.runner import checkpoint_root

        key = self._key(ctx)
        answers, scores = self._steps(key)
        n, answered = ctx.count_cached(answers, inputs[0])
        _, scored = ctx.count_cached(scores, inputs[0])
        trained = ft.load_cached(checkpoint_root(ctx) / key) is not None
        passes = (n - answered) + (n - scored)
        runs = int(not trained and answered < n)
        if runs:
            passes += math.ceil(self.p.epochs * len(ctx.refs[self.p.seeds]))
        return n, scored, Cost(samples=n - scored, forward_passes=passes, training_runs=runs)

    def run(self, inputs: list[Table], ctx: RunContext) -> Table:
        (table,) = inputs
        key = self._key(ctx)
        answers, scores = self._steps(key)
        table = ctx.run_cached(answers, table, prepare=lambda: self._train(key, ctx))
        return ctx.run_cached(scores, table)

    def _steps(self, key: str) -> tuple[Answers, Scores]:
        p = self.p
        answers = Answers(AnswerParams(template=p.template, max_new_tokens=p.max_new_tokens),
                          lambda batch, c: self._answer(batch, c, key), f"finetuned:{key}")
        scores = Scores(ScoreParams(scorer=p.scorer, max_new_tokens=p.max_new_tokens), self._score,
                        f"{self._scorer_identity()}|answers-of:finetuned:{key}")
        return answers, scores

    # ------------------------------------------------------------------ the three phases
    def _config(self):
        from dslrun.operators.evaluation.finetune import FinetuneConfig

        p = self.p
        return FinetuneConfig(method=p.method, epochs=p.epochs, lr=p.lr, batch_size=p.batch_size,
                              max_length=p.max_length, template=p.template, seed=p.seed)

    def _key(self, ctx: RunContext) -> str:
        """The seed-tuned checkpoint's key (it names the checkpoint in every downstream cache key)."""
        from dslrun.operators.evaluation import finetune as ft
        from dslrun.runtime.models.resident import identity

        p = self.p
        return ft.checkpoint_key(identity(p.pfm, "causal-lm"), ctx.refs[p.seeds].ids.tolist(), self._config())

    def _train(self, key: str, ctx: RunContext) -> None:
        """Train on the seeds once (only when some sample still needs an answer)."""
        from dslrun.operators.evaluation import finetune as ft
        from dslrun.operators.evaluation.runner import checkpoint_root
        from dslrun.operators.lm.templates import get_template

        p, cfg = self.p, self._config()
        seeds = ctx.refs[p.seeds]
        path = checkpoint_root(ctx) / key
        if ft.load_cached(path) is None:
            base, tok = ctx.models.causal_lm(p.pfm, device=p.device, dtype=p.dtype)
            samples = seeds.rows([c for c in ("id", "instruction", "input", "output", "messages", "n_turns")
                                  if c in seeds.column_names])
            done = ft.finetune(base, tok, samples, get_template(p.template, tok), cfg, path, progress=ctx.progress)
            ctx.stats.notes.append(f"fine-tuned {p.pfm} on {done.n_samples} seeds in {done.seconds:.1f}s")
        else:
            ctx.stats.notes.append(f"reused the seed-tuned checkpoint {path.name[:12]}")

    def _answer(self, batch: Table, ctx: RunContext, key: str) -> list[dict[str, Any]]:
        from dslrun.operators.evaluation import finetune as ft
        from dslrun.operators.evaluation.generate import generate
        from dslrun.operators.evaluation.runner import checkpoint_root
        from dslrun.operators.lm.templates import get_template

        p = self.p
        base, tok = ctx.models.causal_lm(p.pfm, device=p.device, dtype=p.dtype)
        if getattr(self, "_tuned_key", None) != key:  # merge the adapter once per run, not per batch
            self._tuned, self._tuned_key = ft.load_finetuned(base, checkpoint_root(ctx) / key, self._config()), key
        template = get_template(p.template, tok)
        prompts = [template.render(i, x) for i, x in zip(batch.column("instruction"), batch.column("input"))]
        texts = generate(self._tuned, tok, prompts, max_new_tokens=p.max_new_tokens, batch_size=len(prompts),
                         seed=p.seed)
        return [{ANSWER: t} for t in texts]

    def _score(self, batch: Table, ctx: RunContext) -> list[dict[str, Any]]:
        from dslrun.operators.reward import questions, reward_scores

        p = self.p
        self._tuned = None  # the answers are done: free the tuned copy before loading the scorer
        qs, answers = questions(batch), list(batch.column(ANSWER))
        if p.scorer == "reward":
            model, tok = ctx.models.reward_model(p.scorer_model, device=p.device, dtype=p.dtype)
            return [{SCORE: s} for s in reward_scores(model, tok, list(zip(qs, answers)), p.max_length)]
        from dslrun.operators.llm.prompts import DIGITS, JUDGES, expected_digit
        from dslrun.runtime.api.local import LocalChatBackend

        model, tok = ctx.models.causal_lm(p.scorer_model, device=p.device, dtype=p.dtype)
        judge = JUDGES["deita-quality"]
        convs = [judge.messages({"instruction": i, "input": x, "output": a})
                 for i, x, a in zip(batch.column("instruction"), batch.column("input"), answers)]
        replies = LocalChatBackend(model, tok).generate_batch(convs, raw=True, max_tokens=1, logprobs=True,
                                                              logprob_tokens=list(DIGITS))
        return [{SCORE: expected_digit(r.top_logprobs, r.text)[0]} for r in replies]

    def _scorer_identity(self) -> str:
        from dslrun.runtime.models.resident import identity

        p = self.p
        return identity(p.scorer_model, "causal-lm")
