"""The operator contract: a frozen pydantic ``Params``, declared columns, a resource kind, a version.

An operator says *what* to compute. The runtime decides batching, device,
concurrency and caching. Two flavours:

* ``SampleOperator`` maps each sample to new column values (scores, counts,
  embeddings). Results are cached per sample, so these are the operators that
  cost model or API time.
* ``TableOperator`` works on whole tables: loading, filtering, ranking,
  sampling, saving. They are cheap and never cached.

Field markers on ``Params`` tell the front-ends and the compiler how to read a
spec value: ``Expr`` (an expression over columns), ``StepRef`` (another step),
``InputPath`` (a file that must exist, relative to the spec), ``OutputPath``
(relative to the run's output directory), ``EnvVar`` (the *name* of an
environment variable holding a secret; checked when run, not when checked).
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from dslrun.runtime.context import RunContext
    from dslrun.runtime.table import Table


class Resource(str, enum.Enum):
    CPU = "cpu"
    MODEL = "model"
    API = "api"


class FieldKind(str, enum.Enum):
    EXPR = "expr"
    STEP = "step"
    INPUT_PATH = "input_path"
    OUTPUT_PATH = "output_path"
    ENV = "env"
    VALUE = "value"


Expr = Annotated[Any, FieldKind.EXPR]
StepRef = Annotated[str, FieldKind.STEP]
InputPath = Annotated[str, FieldKind.INPUT_PATH]
OutputPath = Annotated[str, FieldKind.OUTPUT_PATH]
EnvVar = Annotated[str, FieldKind.ENV]


class Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


# Column types, for static checks of expressions and column flow.
STR, INT, FLOAT, BOOL, LIST, VECTOR, ANY = "str", "int", "float", "bool", "list", "vector", "any"
Columns = dict[str, str]

# Columns every loaded pool has. ``messages`` holds the conversation in OpenAI form.
BASE_COLUMNS: Columns = {
    "id": STR,
    "instruction": STR,
    "input": STR,
    "output": STR,
    "messages": LIST,
    "n_turns": INT,
}


class Cost(BaseModel):
    """What computing some samples will take; ``dslrun plan`` sums these."""

    samples: int = 0
    forward_passes: int = 0
    api_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    money: float | None = None


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


class Operator:
    name: ClassVar[str]
    version: ClassVar[str] = "1"
    resource: ClassVar[Resource] = Resource.CPU
    stage: ClassVar[Stage] = Stage.SELECTOR
    computes_labels: ClassVar[bool] = False
    Params: ClassVar[type[Params]]
    # Number of positional inputs: 0 (a source), 1, or None for "one or more".
    n_inputs: ClassVar[int | None] = 1

    def __init__(self, params: Params):
        self.params = params

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def output_columns(self, inputs: list[Columns]) -> Columns:
        """Columns of this step's output, given its inputs' columns (static)."""
        return dict(inputs[0]) if inputs else {}

    def reads(self) -> dict[str, Any]:
        """Expressions (by parameter name) this step evaluates over its input's columns."""
        return {}

    def step_refs(self) -> list[str]:
        """Steps named in parameters (besides positional inputs): extra DAG edges."""
        return []

    def feasibility(self) -> Feasibility:
        """This step's part of the spec's feasibility profile; LLM operators override it."""
        return Feasibility(stage=self.stage, labels=self.computes_labels)


class SampleOperator(Operator):
    """Adds columns computed per sample; cached per sample by the runtime."""

    produces: ClassVar[Columns] = {}
    cacheable: ClassVar[bool] = True
    computes_labels = True
    # The columns ``compute`` reads (None: any). An engine that ships batches to other
    # processes sends only these and ``id``; ``_record`` is never sent.
    columns_read: ClassVar[tuple[str, ...] | None] = None

    def output_columns(self, inputs: list[Columns]) -> Columns:
        cols = dict(inputs[0])
        cols.update(self.produces)
        return cols

    def model_identity(self) -> str:
        """Name and content hash/revision of the model this operator uses ('' for none)."""
        return ""

    def estimate(self, n_samples: int) -> Cost:
        return Cost(samples=n_samples)

    def compute(self, batch: Table, ctx: RunContext) -> list[Mapping[str, Any]]:
        """One mapping of produced column → value per row of ``batch``."""
        raise NotImplementedError


class TableOperator(Operator):
    """Transforms whole tables (load, filter, rank, save, …); not cached."""

    def run(self, inputs: list[Table], ctx: RunContext) -> Table:
        raise NotImplementedError


def field_kind(params_cls: type[BaseModel], key: str) -> FieldKind | None:
    """How a spec value for ``key`` is to be read; None when the key is unknown."""
    field = params_cls.model_fields.get(key)
    if field is None:
        return None
    for meta in field.metadata:
        if isinstance(meta, FieldKind):
            return meta
    return _kind_in(field.annotation) or FieldKind.VALUE


def _kind_in(annotation: Any) -> FieldKind | None:
    """The marker inside ``Expr | None``, ``list[StepRef]`` and the like."""
    for meta in getattr(annotation, "__metadata__", ()):
        if isinstance(meta, FieldKind):
            return meta
    for arg in typing.get_args(annotation):
        kind = _kind_in(arg)
        if kind is not None:
            return kind
    return None
