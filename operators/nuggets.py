"""``nuggets``: Nuggets' one-shot golden score (Li et al., "One-Shot Learning as Instruction Data
Prospector for Large Language Models", ACL 2024).

Each candidate is used as a one-shot demonstration in front of every anchor task; its
golden score is the share of anchors whose answer becomes more likely than zero-shot
(kernel and prompt: ``operators/influence/golden.py``). Anchors are a predefined task
set — a file, e.g. Nuggets' own 100 k-means anchors of Alpaca-GPT4
(``specs/data/nuggets_anchors_kmeans_100.json``) — or, without a file, the pool samples
nearest to the centroids of a seeded k-means over the ``embedding`` column.

Golden scores are cached per candidate; the key holds the anchors' content and the
model, so a different anchor set or model never reuses them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from dslrun.core.columns import FLOAT, Columns
from dslrun.core.context import RunContext
from dslrun.core.cost import Cost, Feasibility, Resource
from dslrun.core.params import InputPath, NoCache, Params
from dslrun.core.values import Ref
from dslrun.operators.base import TableOperator
from dslrun.operators.influence.bound import BoundOperator
from dslrun.operators.registry import register
from dslrun.runtime.data.table import Table, as_column

NAME = "nuggets"
GOLDEN = "_golden"


class NuggetsParams(Params):
    anchors: InputPath | None = Field(None, description="the predefined task set (Alpaca JSON/JSONL); "
                                                        "null: k-means anchors from the pool's `embedding`")
    k: int = Field(100, ge=1, description="k-means anchors: number of clusters")
    seed: int = Field(0, description="k-means anchors: seed")
    embedding: str = Field("embedding", description="k-means anchors: column holding one vector per sample")
    model: str = Field("smollm2-135m", description="alias, local folder, .gguf file or hub id of a causal LM")
    column: str = Field("golden_score", description="output column")
    dtype: str = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    device: Annotated[str, NoCache()] = Field("auto", description="auto: CUDA when present, else CPU")


class GoldenParams(Params):
    anchors: str  # content hash of the anchor set
    n_anchors: int
    dtype: str = "auto"


class GoldenScore(BoundOperator[GoldenParams]):
    """Golden score per candidate against a fixed anchor set (cached); state: the Scorer."""

    name = NAME
    version = "2"  # 2: anchors cut to 200 tokens, without special tokens (issue 17)
    produces = {GOLDEN: FLOAT}

    def estimate(self, n_samples: int) -> Cost:
        return Cost(samples=n_samples, forward_passes=n_samples * (1 + self.params.n_anchors))

    def compute(self, batch: Table, ctx: RunContext) -> list[Mapping[str, Any]]:
        ins, inp, out = (batch.column(c) for c in ("instruction", "input", "output"))
        return [{GOLDEN: self.state.golden(a, b, c)} for a, b, c in zip(ins, inp, out)]


class Scorer:
    """The model, the encoded anchors and their zero-shot scores (computed once, on first need)."""

    def __init__(self, p: NuggetsParams, ctx: RunContext, anchors: list[tuple[str, str, str]]):
        self.p, self.ctx, self.texts = p, ctx, anchors
        self._state: tuple[Any, Any, list, list[float]] | None = None

    def _ready(self) -> tuple[Any, Any, list, list[float]]:
        if self._state is None:
            from dslrun.operators.influence.golden import answer_logprobs, encode_anchor

            model, tok = self.ctx.models.causal_lm(self.p.model, device=self.p.device, dtype=self.p.dtype)
            anchors = [encode_anchor(tok, *t) for t in self.texts]
            zero = answer_logprobs(model, anchors, _pad(tok), token_budget=_budget(model))
            self._state = (model, tok, anchors, zero)
        return self._state

    def golden(self, instruction: str, input: str, output: str) -> float:
        from dslrun.operators.influence.golden import answer_logprobs, encode_demo, golden_score

        model, tok, anchors, zero = self._ready()
        demo = encode_demo(tok, instruction, input, output)
        one = answer_logprobs(model, anchors, _pad(tok), demo, token_budget=_budget(model))
        return golden_score(zero, one)


def _pad(tok: Any) -> int:
    return int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id or 0)


def _budget(model: Any) -> int:
    from dslrun.operators.lm.losses import default_token_budget

    return 2 * default_token_budget(model)


@register
class Nuggets(TableOperator[NuggetsParams]):
    """Nuggets: how often a sample, as a one-shot demonstration, helps the model on anchor tasks."""

    name = NAME
    version = "1"
    resource = Resource.MODEL

    def feasibility(self) -> Feasibility:
        # The golden score is measured on the pending fine-tune model itself; nothing is trained.
        return Feasibility(labels=True, llm_uses=1, uses_pfm=True, model=self.params.model)

    def output_columns(self, inputs: list[Columns]) -> Columns:
        return {**inputs[0], self.params.column: FLOAT}

    def reads(self) -> dict[str, Any]:
        return {} if self.params.anchors else {"embedding": Ref(name=self.params.embedding)}

    def _step(self, table: Table, ctx: RunContext) -> GoldenScore:
        from dslrun.runtime.models.resident import identity

        p = self.params
        anchors = self.anchor_texts(table)
        digest = hashlib.sha256(json.dumps(anchors).encode()).hexdigest()[:24]
        ctx.stats.notes.append(f"{len(anchors)} anchors ({'file' if p.anchors else 'k-means'}; {digest})")
        return GoldenScore(GoldenParams(anchors=digest, n_anchors=len(anchors), dtype=p.dtype), Scorer(p, ctx, anchors),
                           identity(p.model, "causal-lm"))

    def dry_run_cost(self, inputs: list[Table], ctx: RunContext) -> tuple[int, int, Cost]:
        """For ``dslrun plan``: samples, cached ones, and the work left (zero-shot passes included)."""
        op = self._step(inputs[0], ctx)
        samples, cached = ctx.count_cached(op, inputs[0])
        cost = op.estimate(samples - cached)
        if cost.samples:
            cost.forward_passes += op.params.n_anchors  # zero-shot, once
        return samples, cached, cost

    def run(self, inputs: list[Table], ctx: RunContext) -> Table:
        (table,) = inputs
        p = self.params
        if len(table) == 0:
            return table.with_columns({p.column: as_column([None] * len(table), FLOAT)})
        done = ctx.run_cached(self._step(table, ctx), table)
        return table.with_columns({p.column: done.column(GOLDEN)})

    def anchor_texts(self, table: Table) -> list[tuple[str, str, str]]:
        p = self.params
        if p.anchors:
            from dslrun.runtime.data.pool_files import read_pool

            source = read_pool(p.anchors).table
            rows: list[int] = list(range(len(source)))
        else:
            source = table
            rows = kmeans_anchors(_vectors(table.column(p.embedding)), p.k, p.seed)
        if not len(rows):
            raise ValueError(f"{p.anchors}: the anchor set is empty")
        ins, inp, out = (source.column(c) for c in ("instruction", "input", "output"))
        return [(str(ins[i]), str(inp[i]), str(out[i])) for i in rows]


def kmeans_anchors(vecs: np.ndarray, k: int, seed: int) -> list[int]:
    """Rows nearest to each centroid of a seeded k-means (distinct, in cluster order)."""
    from sklearn.cluster import KMeans

    k = min(k, len(vecs))
    km = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(vecs)
    dist = ((vecs[None, :, :] - km.cluster_centers_[:, None, :]) ** 2).sum(-1) if len(vecs) * k < 5e7 else None
    if dist is None:  # large pools: one centroid at a time
        nearest = [int(((vecs - c) ** 2).sum(1).argmin()) for c in km.cluster_centers_]
    else:
        nearest = [int(i) for i in dist.argmin(1)]
    return list(dict.fromkeys(nearest))


def _vectors(column: np.ndarray) -> np.ndarray:
    if column.ndim == 2:
        return column.astype(np.float32)
    return np.stack([np.asarray(v, dtype=np.float32) for v in column])
