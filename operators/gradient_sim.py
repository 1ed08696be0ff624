"""``gradient-sim``: LESS (Xia et al., ICML 2024) — how well a sample's gradient aligns with a target task's.

A whole-pool step in three stages (kernels in ``operators/influence/``):

1. **Warm-up** — LoRA-tune the model on a seeded ``warmup_fraction`` of the pool; one
   checkpoint (adapter + Adam moments) per epoch, stored under the cache folder by
   (model identity, warm-up sample ids, hyper-parameters): a re-run never retrains.
2. **Features** — per checkpoint, each candidate's Adam-preconditioned gradient and each
   target example's plain gradient, cast to float16, Rademacher-projected to ``dim``
   and L2-normalised. Cached per sample; the key holds the warm-up key, the gradient
   kind, the projector, its seed and ``dim``, so a grown pool or a new target set computes
   only the new samples.
3. **Matching** — checkpoint-weighted cosine similarity to every target example, mean
   within each target subtask, max over subtasks → ``<column>``; ``<column>_subtask``
   names the subtask that gave the max. Select with ``rank(..., by: <column>, fraction: 0.05)``.

**Projector.** ``dslrun`` (default): a seeded Rademacher matrix drawn alike on every device
(``influence/project.py``). ``trak``: TRAK's ``BasicProjector`` with LESS's arguments (seed
``projection_seed``, block 128, the model's device and dtype; ``influence/trak_projection.py``),
so the features equal LESS's for the same gradients and can be mixed with features LESS
wrote (LESS itself uses TRAK's ``CudaProjector`` where the ``fast_jl`` kernel is installed:
another matrix). Stored as float32 (TRAK's values exactly); the key holds traker's version,
the device kind and the dtype. Both preserve inner products alike; ours is the faster
(``bench/projection.py``, SmolLM2-135M LoRA r 8: P = 921,600, dim 1024, 32 real gradients,
2 shared CPU cores, fastest of 2): a call on 16 gradients takes 17.0 s vs TRAK's 36.6 s
(1,062 vs 2,290 s per 1k gradients in LESS's batches of 16; each call draws the whole
matrix, so larger batches cost little more); the largest |cosine error| against the exact
cosines over 496 pairs is 0.108 vs 0.081 (mean 0.025 vs 0.026). TRAK holds a P × 128 block
and its int32 draw at once (0.9 GB here, 15 GB at r 128); ours a 4096 × ``dim`` block.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from dslrun.core.columns import ANY, FLOAT, STR, Columns
from dslrun.core.context import RunContext
from dslrun.core.cost import Cost, Feasibility, Resource
from dslrun.core.params import InputPath, KeyedWhenSet, NoCache, Params
from dslrun.operators.base import TableOperator
from dslrun.operators.influence.bound import BoundOperator
from dslrun.operators.registry import register
from dslrun.runtime.data.table import Table, as_column

NAME = "gradient-sim"
FEATURES = "_grad_features"


class GradientSimParams(Params):
    target: InputPath = Field(description="target-task examples (Alpaca JSON/JSONL, ShareGPT, messages)")
    subtask_field: str = Field("subtask", description="target field naming each example's subtask "
                                                      "(absent: one subtask)")
    model: str = Field("smollm2-135m", description="alias, local folder, .gguf file or hub id of a causal LM")
    warmup_fraction: float = Field(0.05, gt=0, le=1, description="share of the pool the LoRA warm-up trains on")
    seed: int = Field(0, description="seed of the warm-up subset, its order and LoRA's initialisation")
    r: int = Field(128, ge=1, description="LoRA rank")
    alpha: int = Field(512, ge=1, description="LoRA alpha")
    dropout: float = Field(0.1, ge=0, lt=1, description="LoRA dropout")
    target_modules: list[str] = Field(["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1,
                                      description="modules LoRA adapts")
    epochs: int = Field(4, ge=1, description="warm-up epochs (one checkpoint each)")
    lr: float = Field(2e-5, gt=0, description="peak learning rate (linear schedule)")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="share of optimizer steps with a rising learning rate")
    grad_accum: int = Field(32, ge=1, description="samples per optimizer step (batch size 1 × accumulation)")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping (0: none)")
    dim: int = Field(8192, ge=1, description="projected feature dimension")
    projection_seed: int = Field(0, description="seed of the Rademacher projection")
    projector: Literal["dslrun", "trak"] = Field(
        "dslrun", description="dslrun: a seeded Rademacher matrix drawn alike on every device (faster); trak: "
                              "TRAK's BasicProjector with LESS's arguments, features equal to LESS's for the "
                              "same gradients (pip install 'dslrun[less]')")
    template: str = Field("tulu", description="tulu (LESS's chat format) or a project template "
                                              "(alpaca, chat, a template file)")
    max_length: int = Field(2048, ge=8, description="tokens kept per sample")
    column: str = Field("less_score", description="output column")
    dtype: str = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    device: Annotated[str, NoCache()] = Field("auto", description="auto: CUDA when present, else CPU")


class FeatureParams(Params):
    warmup: str
    kind: Literal["adam", "sgd"]
    dim: int
    projection_seed: int
    projector: Annotated[str, KeyedWhenSet()] = "dslrun"  # added later: entries before it are dslrun's
    template: str
    max_length: int
    dtype: str


class GradFeatures(BoundOperator[FeatureParams]):
    """Per-sample projected gradient features for every warm-up checkpoint (cached); state: the Runner."""

    name = NAME
    version = "1"
    produces = {FEATURES: ANY}

    def compute(self, batch: Table, ctx: RunContext) -> list[Mapping[str, Any]]:
        feats = self.state.features(list(batch.column("messages")), self.params.kind, ctx)
        return [{FEATURES: f} for f in feats]


@register
class GradientSim(TableOperator[GradientSimParams]):
    """LESS: LoRA warm-up, projected Adam gradients, similarity to a target task's gradients."""

    name = NAME
    version = "1"
    resource = Resource.MODEL

    def feasibility(self) -> Feasibility:
        # LESS trains one model (the LoRA warm-up, on pool samples) and scores with the PFM's own gradients.
        return Feasibility(labels=True, llm_uses=1, trained_llms=1, uses_pfm=True, trains_on_pool=True,
                           model=self.params.model)

    def output_columns(self, inputs: list[Columns]) -> Columns:
        return {**inputs[0], self.params.column: FLOAT, self.params.column + "_subtask": STR}

    def _setup(self, table: Table, ctx: RunContext) -> tuple[Any, Table, list[tuple[GradFeatures, Table]]]:
        """The runner (nothing loaded yet), the target table, and the cached feature step of each."""
        from dslrun.runtime.data.pool_files import read_pool

        from .influence.runner import Runner

        p = self.params
        target = read_pool(p.target).table
        if len(target) == 0:
            raise ValueError(f"{p.target}: the target set has no valid example")
        runner = Runner(p, ctx, ctx.cache_root)
        runner.warmup_samples(table)
        steps = []
        kinds: tuple[tuple[Literal["adam", "sgd"], Table], ...] = (("adam", table), ("sgd", target))
        for kind, tab in kinds:
            fp = FeatureParams(warmup=runner.key, kind=kind, dim=p.dim, projection_seed=p.projection_seed,
                               projector=runner.projector_key, template=template_key(p.template),
                               max_length=p.max_length, dtype=p.dtype)
            steps.append((GradFeatures(fp, runner, runner.identity), tab))
        return runner, target, steps

    def dry_run_cost(self, inputs: list[Table], ctx: RunContext) -> tuple[int, int, Cost]:
        """For ``dslrun plan``: samples (candidates + targets), cached ones, and the work left."""
        runner, _, steps = self._setup(inputs[0], ctx)
        chosen, folder = runner.warmup_samples(inputs[0])
        samples = cached = 0
        for op, tab in steps:
            n, hit = ctx.count_cached(op, tab)
            samples, cached = samples + n, cached + hit
        trained = (folder / "done.json").exists()
        epochs = self.params.epochs
        passes = 2 * epochs * (samples - cached) + (0 if trained else 2 * epochs * len(chosen))
        if not trained:
            cached = min(cached, samples - 1)  # the warm-up is work left even when features are cached
        return samples, cached, Cost(samples=samples - cached, forward_passes=passes, training_runs=int(not trained))

    def run(self, inputs: list[Table], ctx: RunContext) -> Table:
        from .influence.match import checkpoint_weights, influence_matrix, subtask_scores

        (table,) = inputs
        p = self.params
        col = p.column
        if len(table) == 0:
            return table.with_columns({col: as_column([None] * len(table), FLOAT),
                                       col + "_subtask": as_column([None] * len(table), STR)})
        runner, target, steps = self._setup(table, ctx)
        runner.warm_up(table)  # its checkpoints weigh the scores, so it is found (or trained) either way
        out = {kind: ctx.run_cached(op, tab).column(FEATURES) for (op, tab), kind in zip(steps, ("adam", "sgd"))}
        cand_ok = [i for i, f in enumerate(out["adam"]) if f is not None]
        targ_ok = [i for i, f in enumerate(out["sgd"]) if f is not None]
        if not targ_ok:
            raise ValueError(f"{p.target}: no target example has a response token within max_length")
        subtasks = subtask_labels(target, p.subtask_field)
        scores: list[float | None] = [None] * len(table)
        best: list[str | None] = [None] * len(table)
        if cand_ok:
            cand = np.stack([np.asarray(out["adam"][i], dtype=np.float32) for i in cand_ok])
            targ = np.stack([np.asarray(out["sgd"][i], dtype=np.float32) for i in targ_ok])
            sim = influence_matrix(cand, targ, checkpoint_weights([c.avg_lr for c in runner.checkpoints]))
            names = list(dict.fromkeys(subtasks[i] for i in targ_ok))
            s, b = subtask_scores(sim, [subtasks[i] for i in targ_ok])
            for row, score, k in zip(cand_ok, s, b):
                scores[row], best[row] = float(score), names[k]
        if len(cand_ok) < len(table):
            ctx.stats.notes.append(f"{len(table) - len(cand_ok)} samples have no response token within "
                                   f"max_length={p.max_length}: no {col}")
        return table.with_columns({col: as_column(scores, FLOAT), col + "_subtask": as_column(best, STR)})


def template_key(template: str) -> str:
    """A template file enters cache keys by content, not by its absolute path."""
    import hashlib

    path = Path(template)
    if template != "tulu" and path.is_file():
        return "file:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return template


def subtask_labels(target: Table, field: str) -> list[str]:
    if field in target:
        return ["" if v is None else str(v) for v in target.column(field)]
    return ["all"] * len(target)
