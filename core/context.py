"""What an operator may use while it runs, as an interface: the runtime provides it.

Operators type against ``RunContext`` here and never import the runtime's
internals; ``runtime/execution/context.py`` implements it. A whole-table step that
scores samples one by one after shared work (``gradient-sim``, ``nuggets``, MoDS's
``necessity``) hands that part to ``run_cached``: caching, batching, statistics and
``dslrun plan``'s dry runs are the runtime's business, not the step's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dslrun.core.table import TableLike


@dataclass
class NodeStats:
    """What one step did. ``outcomes`` counts an API step's samples by outcome (``ok``,
    ``unparsable``, ``out of scale``, ``failed: CAUSE``, ``not run: CAUSE``);
    ``max_failed_fraction`` is the share of them that may fail before the run fails."""

    rows_in: int = 0
    rows_out: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    computed: int = 0
    failed: int = 0
    quarantined: int = 0
    # Samples a dry run (``dslrun plan``) left uncomputed: the step's output is an upper bound.
    pending: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    max_failed_fraction: float | None = None
    # What the user should look at: a step kept nothing, or a fraction rounded down to 0 rows.
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()
                if (k not in ("notes", "outcomes", "max_failed_fraction", "warnings") or v) and k != "pending"}

    @property
    def failed_samples(self) -> int:
        """Samples with no usable reply (calls failed); budget or a stop leaves them not run."""
        return sum(n for k, n in self.outcomes.items() if k.startswith("failed"))

    def failure(self) -> str | None:
        """Why this step fails the run although it finished (too many samples failed), or None.
        The one place that decides it: the run's exit status and summary both ask here."""
        total = sum(self.outcomes.values())
        if self.max_failed_fraction is None or not total or self.failed_samples <= self.max_failed_fraction * total:
            return None
        causes = ", ".join(f"{k.removeprefix('failed: ')}={n}" for k, n in sorted(self.outcomes.items())
                           if k.startswith("failed"))
        return (f"{self.failed_samples} of {total} samples failed ({causes}), more than "
                f"max_failed_fraction {self.max_failed_fraction:g}")


class RunContext(Protocol):
    out_dir: Path
    spec_dir: Path
    cache: Any  # the score store, or None
    node: str
    stats: NodeStats
    progress: Any
    settings: Any
    dry_run: bool
    models: Any
    refs: dict[str, Any]
    input_columns: dict[str, str]  # the first input's column kinds as compiled ("str", "float", ...)

    @property
    def cache_root(self) -> Path:
        """Where artifacts that are cache too (warm-up checkpoints, fine-tunes) live."""
        ...

    def run_cached(self, op: Any, table: TableLike, prepare: Callable[[], None] | None = None) -> Any:
        """``table`` with ``op``'s columns: cached samples looked up, the rest computed in
        batches and committed. ``prepare`` runs once, only when something is computed
        (shared work such as a fine-tune). Statistics add up across calls."""
        ...

    def count_cached(self, op: Any, table: TableLike) -> tuple[int, int]:
        """(distinct samples in ``table``, how many of them ``op`` has cached)."""
        ...
