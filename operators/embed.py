"""``embed``: one vector per sample, for diversity-aware selection and deduplication.

Two kinds of model:

* ``sentence-encoder`` (default ``minilm-l6``): the encoder's own pooling
  (attention-masked mean for all-MiniLM-L6-v2), L2-normalised.
* ``causal-lm``: the last hidden layer of a causal LM over the sample's text,
  pooled by ``mean`` over its tokens or the ``last`` token, as DEITA embeds
  conversations with its scorer model; L2-normalised unless asked not to be.

Vectors are stored in the cache as float16 (half the bytes, plenty for cosine
similarity); the column holds float32 for arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from dslrun.core.columns import VECTOR, Columns
from dslrun.core.context import RunContext
from dslrun.core.cost import Cost, Feasibility, Resource
from dslrun.core.params import ColumnName, NoCache, Params
from dslrun.operators.base import SampleOperator
from dslrun.operators.registry import register
from dslrun.runtime.data.table import Table


class EmbedParams(Params):
    model: str = Field("minilm-l6", description="alias, local folder or hub id")
    kind: Literal["sentence-encoder", "causal-lm"] = Field("sentence-encoder", description="what the model is")
    of: Literal["instruction", "response", "whole"] = Field("whole", description="which text to embed")
    pooling: Literal["mean", "last"] = Field("mean", description="causal-lm: mean over tokens, or the last token")
    normalize: bool = Field(True, description="L2-normalise the vectors")
    max_length: int = Field(512, ge=8, description="tokens kept per text")
    column: Annotated[str, ColumnName()] = Field("embedding", description="output column")
    dtype: str = Field("auto", description="causal-lm: auto = bf16 on GPU, fp32 on CPU")
    device: Annotated[str, NoCache()] = Field("auto", description="auto: CUDA when present, else CPU")


def texts_of(batch: Table, of: str) -> list[str]:
    ins, inp, out = (batch.column(c) for c in ("instruction", "input", "output"))
    if of == "instruction":
        return [a + ("\n" + b if b else "") for a, b in zip(ins, inp)]
    if of == "response":
        return list(out)
    return [a + ("\n" + b if b else "") + "\n" + c for a, b, c in zip(ins, inp, out)]


@register
class Embed(SampleOperator[EmbedParams]):
    """A vector per sample from a sentence encoder or a causal LM's hidden states."""

    name = "embed"
    version = "1"
    resource = Resource.MODEL

    def output_columns(self, inputs: list[Columns]) -> Columns:
        cols = dict(inputs[0]) if inputs else {}
        cols[self.params.column] = VECTOR
        return cols

    def model_identity(self) -> str:
        from dslrun.runtime.models.resident import identity

        return identity(self.params.model, self.params.kind)

    def estimate(self, n_samples: int) -> Cost:
        return Cost(samples=n_samples, forward_passes=n_samples)

    def feasibility(self) -> Feasibility:
        # A sentence encoder is not counted as an LLM; a causal LM's hidden states are.
        is_llm = self.params.kind == "causal-lm"
        return Feasibility(labels=True, llm_uses=int(is_llm), model=self.params.model if is_llm else None)

    def compute(self, batch: Table, ctx: RunContext) -> list[Mapping[str, Any]]:
        p = self.params
        texts = texts_of(batch, p.of)
        if p.kind == "sentence-encoder":
            encoder = ctx.models.sentence_encoder(p.model, device=p.device)
            encoder.max_seq_length = min(p.max_length, encoder.max_seq_length or p.max_length)
            vecs = encoder.encode(texts, batch_size=len(texts), normalize_embeddings=p.normalize,
                                  convert_to_numpy=True, show_progress_bar=False)
        else:
            model, tokenizer = ctx.models.causal_lm(p.model, device=p.device, dtype=p.dtype)
            vecs = hidden_states(model, tokenizer, texts, p.pooling, p.max_length)
            if p.normalize:
                vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        half = np.asarray(vecs, dtype=np.float16)
        return [{p.column: v} for v in half]


def hidden_states(model: Any, tokenizer: Any, texts: list[str], pooling: str, max_length: int) -> np.ndarray:
    """Last-layer hidden states pooled per text; padding never leaks into the pool."""
    import torch

    tokenizer.padding_side = "right"
    enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
    enc = {k: v.to(model.device) for k, v in enc.items()}
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True)
    h = out.hidden_states[-1].float()
    mask = enc["attention_mask"].unsqueeze(-1).float()
    if pooling == "mean":
        pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1)
    else:
        last = enc["attention_mask"].sum(1) - 1
        pooled = h[torch.arange(h.shape[0]), last]
    return pooled.cpu().numpy()
