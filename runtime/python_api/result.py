"""What ``dslrun.run`` returns: the selected subset and its scores as Arrow tables, the
statistics of every step, the plan, and the folder with the run's files."""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dslrun.runtime.python_api.specs import CompiledPlan
    from dslrun.runtime.run import RunOutcome


def output_folder(out: str | Path | None) -> tuple[Path, Callable[[], None] | None]:
    """``out``, or a fresh temporary folder and the function that removes it."""
    if out is not None:
        return Path(out), None
    folder = Path(tempfile.mkdtemp(prefix="dslrun-run-"))
    return folder, lambda: shutil.rmtree(folder, ignore_errors=True)


class Result:
    """A finished run. ``selected`` and ``scores`` are those of the spec's last ``save`` step
    (the last step, when there is none); ``table(step)`` and ``scores_of(step)`` give any step's."""

    def __init__(self, plan: CompiledPlan, done: RunOutcome, cleanup: Callable[[], None] | None):
        self.plan = plan
        self.out = done.out
        self.lock_path = done.lock_path
        self.report_path = done.report_path
        self.seconds = done.result.seconds
        self._tables = done.result.tables
        self.stats = dict(done.result.stats)  # step → NodeStats (rows in/out, cache hits/misses, seconds)
        self.failures = dict(done.failures)  # step → why, for steps whose samples failed (the CLI exits 1)
        self.warnings = list(done.warnings)
        if cleanup is not None:  # out=None: the folder goes with the result
            weakref.finalize(self, cleanup)

    @property
    def step(self) -> str:
        """The step whose rows ``selected`` holds."""
        order = self.plan.plan.order
        saves = [n for n in order if self.plan.plan.nodes[n].step.op == "save" and n in self._tables]
        return saves[-1] if saves else next(n for n in reversed(order) if n in self._tables)

    @cached_property
    def selected(self) -> Any:
        """The selected samples in the pool's own schema (what ``save`` writes), a ``pyarrow.Table``."""
        return self.table(self.step)

    @cached_property
    def scores(self) -> Any:
        """id, row (position in the pool) and every computed column of the selected samples,
        a ``pyarrow.Table`` (what ``save`` writes as ``*.scores.parquet``)."""
        return self.scores_of(self.step)

    def table(self, step: str) -> Any:
        """A step's rows, as records in the pool's own schema, in a ``pyarrow.Table``."""
        from dslrun.runtime.data import memory_pools

        t = self._get(step)
        source = t.meta.get("source")
        if memory_pools.is_memory(source):  # an Arrow pool in memory: its rows, its schema
            taken = memory_pools.lookup(source).take(t.column("_row"))
            if taken is not None:
                return taken
        from dslrun.runtime.data.arrow_records import records_to_arrow

        return records_to_arrow([r for block in t.blocks("_record") for r in block])

    def scores_of(self, step: str) -> Any:
        from dslrun.operators.save import scores_arrow

        return scores_arrow(self._get(step))

    def _get(self, step: str) -> Any:
        if step not in self._tables:
            raise KeyError(f"no step `{step}` in this run; its steps: {', '.join(self._tables)}")
        return self._tables[step]

    def to_pandas(self) -> Any:
        """``selected`` as a pandas DataFrame."""
        return self.selected.to_pandas()

    def to_dataset(self) -> Any:
        """``selected`` as a Hugging Face ``datasets.Dataset`` (needs ``pip install dslrun[hf]``)."""
        try:
            import datasets
        except ImportError as e:
            raise ImportError("to_dataset() needs the `datasets` package: pip install 'dslrun[hf]'") from e
        return datasets.Dataset(self.selected)

    @cached_property
    def lock(self) -> dict[str, Any]:
        """The lock file (``dslrun.lock.json``): what was run, on what, with what counts."""
        return json.loads(Path(self.lock_path).read_text(encoding="utf-8"))

    def summary(self) -> str:
        """The table ``dslrun run`` prints at the end."""
        from dslrun.runtime.run import summary_lines

        class _R:
            stats = self.stats

        return "\n".join(summary_lines(self.plan.plan, _R()))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        rows = self.stats[self.step].rows_out if self.step in self.stats else "?"
        return f"<dslrun result: {rows} rows selected by `{self.step}` in {self.seconds:.2f}s, files in {self.out}>"
