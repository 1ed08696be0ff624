"""The operator contract: typed ``Params``, declared columns, a resource kind, a version.

An operator says *what* to compute. The runtime decides batching, device,
concurrency and caching. Three kinds, siblings, each run by one runner of the
runtime (``runtime/execution/dispatch.py`` holds the one table of them):

* ``TableOperator`` works on whole tables: loading, filtering, ranking,
  sampling, saving. Its own results are not cached; a step that scores samples
  one by one after shared work hands that part to ``ctx.run_cached``.
* ``SampleOperator`` maps each sample to new column values (scores, counts,
  embeddings) in batches; results are cached per sample.
* ``LlmOperator`` (``operators/llm/base.py``) gets each sample's values from one
  chat call; replies are cached per sample the moment they land.

``SampleOperator`` and ``LlmOperator`` share ``CachedOperator``: what a per-sample
cache entry is keyed by (``core/keys.py``) and what ``dslrun plan`` asks of it.
Every hook an operator may provide is declared here, with its default.

Parameters, their field markers, column types and cost/feasibility records live in
``dslrun.core`` (``core/params.py``, ``core/columns.py``, ``core/cost.py``): the
language and the runtime read them without importing any operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, get_args, get_origin

from dslrun.core.columns import Columns
from dslrun.core.cost import Cost, Feasibility, Resource, Stage
from dslrun.core.params import Params

if TYPE_CHECKING:
    from dslrun.core.context import RunContext
    from dslrun.runtime.data.table import Table


P = TypeVar("P", bound=Params)


class Operator(Generic[P]):
    """An operator generic in its parameters: ``class Ifd(SampleOperator[IfdParams])``.

    ``params_type`` (the ``Params`` model the compiler validates a step against) is
    read from that type argument when the class is defined. A subclass of a concrete
    operator that takes more parameters sets ``params_type`` in its body instead.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    resource: Resource = Resource.CPU
    stage: ClassVar[Stage] = Stage.SELECTOR
    computes_labels: ClassVar[bool] = False
    params_type: ClassVar[type[Params]] = Params
    # Number of positional inputs: 0 (a source), 1, or None for "one or more".
    n_inputs: ClassVar[int | None] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Only this class's own bases: a subclass of a concrete operator inherits its parent's
        # ``__orig_bases__`` and would otherwise lose the ``params_type`` it sets in its body.
        for base in cls.__dict__.get("__orig_bases__", ()):
            args = get_args(base) if get_origin(base) is not None else ()
            if args and isinstance(args[0], type) and issubclass(args[0], Params):
                cls.params_type = args[0]

    def __init__(self, params: P):
        self.params: P = params

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

    def env_vars(self) -> dict[str, str]:
        """Environment variables the step needs when it runs, by parameter name (checked before any work)."""
        return {}


class TableOperator(Operator[P]):
    """Transforms whole tables (load, filter, rank, save, …); its own results are not cached."""

    def run(self, inputs: list[Table], ctx: RunContext) -> Table:
        raise NotImplementedError

    def dry_run_cost(self, inputs: list[Table], ctx: RunContext) -> tuple[int, int, Cost] | None:
        """For ``dslrun plan``: (samples, cached, work left) of the per-sample work this step
        hands to ``ctx.run_cached``; None for a step that has none."""
        return None


class CachedOperator(Operator[P]):
    """What the two per-sample kinds share: produced columns and what keys their cache entries."""

    produces: ClassVar[Columns] = {}
    cacheable: ClassVar[bool] = True
    computes_labels = True
    # The columns the operator reads (None: any). An engine that ships batches to other
    # processes sends only these and ``id``; ``_record`` is never sent.
    columns_read: ClassVar[tuple[str, ...] | None] = None
    # Modules outside dslrun.operators that this operator's values come from (they join the
    # source hash that tests/fixtures/code_versions.json checks against ``version``; see
    # core/code_version.py). Modules of dslrun.operators it imports are found by themselves.
    kernels: ClassVar[tuple[str, ...]] = ()

    def output_columns(self, inputs: list[Columns]) -> Columns:
        cols = dict(inputs[0])
        cols.update(self.produces)
        return cols

    def model_identity(self) -> str:
        """Name and content hash/revision of the model this operator uses ('' for none)."""
        return ""

    def estimate(self, n_samples: int) -> Cost:
        return Cost(samples=n_samples)

    def estimate_rows(self, table: Table, rows: list[int]) -> Cost:
        """The work left for these rows of ``table`` (``dslrun plan``); by default ``estimate``."""
        return self.estimate(len(rows))


class SampleOperator(CachedOperator[P]):
    """Adds columns computed per sample, a batch at a time; cached per sample by the runtime."""

    def compute(self, batch: Table, ctx: RunContext) -> list[Mapping[str, Any]]:
        """One mapping of produced column → value per row of ``batch``."""
        raise NotImplementedError
