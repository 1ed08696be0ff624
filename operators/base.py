"""The operator contract: a frozen pydantic ``Params``, declared columns, a resource kind, a version.

An operator says *what* to compute. The runtime decides batching, device,
concurrency and caching. Two flavours:

* ``SampleOperator`` maps each sample to new column values (scores, counts,
  embeddings). Results are cached per sample, so these are the operators that
  cost model or API time.
* ``TableOperator`` works on whole tables: loading, filtering, ranking,
  sampling, saving. They are cheap and never cached.

Parameters, their field markers, column types and cost/feasibility records live in
``dslrun.core`` (``core/params.py``, ``core/columns.py``, ``core/cost.py``): the
language and the runtime read them without importing any operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from dslrun.core.columns import Columns
from dslrun.core.cost import Cost, Feasibility, Resource, Stage
from dslrun.core.params import Params

if TYPE_CHECKING:
    from dslrun.runtime.data.table import Table
    from dslrun.runtime.execution.context import RunContext


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
