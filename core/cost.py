"""What a step needs and costs: its resource kind, the work ``dslrun plan`` sums, its feasibility profile."""

from __future__ import annotations

import enum

from pydantic import BaseModel


class Resource(str, enum.Enum):
    CPU = "cpu"
    MODEL = "model"
    API = "api"


class Cost(BaseModel):
    """What computing some samples will take; ``dslrun plan`` sums these."""

    samples: int = 0
    forward_passes: int = 0
    api_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    money: float | None = None
    # Fine-tunes and LoRA warm-ups still to train; their forward+backward passes are in forward_passes.
    training_runs: int = 0


class Stage(str, enum.Enum):
    """Where a step sits in the literature's three-stage scheme (``dslrun explain`` counts by it)."""

    IO = "io"                  # reading and writing pools: not part of the selector
    SELECTOR = "selector"      # a feature, a quality label or a selection algorithm: one algorithm step
    EVALUATION = "evaluation"  # fine-tuning and judging the result: not part of the selector


class Feasibility(BaseModel):
    """What one step adds to the spec's feasibility profile (see ``dsl/explain.py``).

    ``uses_pfm``: the step's values depend on the pending fine-tune model itself, so
    changing that model means re-scoring. ``trains_on_pool``: the step trains a model on
    candidate data, so a new pool means re-training. ``closed_api``: the step sends the
    samples to a proprietary model's API.
    """

    stage: Stage = Stage.SELECTOR
    # A feature or quality label (one algorithm step each), or row selection (a chain of
    # filters, ranks and derives is one step, however it is spelled).
    labels: bool = False
    llm_uses: int = 0
    trained_llms: int = 0
    uses_pfm: bool = False
    trains_on_pool: bool = False
    closed_api: bool = False
    model: str | None = None  # the LLM the step uses, compared with the spec's PFM
