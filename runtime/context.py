"""What an operator may use while it runs: where to write, the cache, progress, settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dslrun.runtime.cache import ScoreCache
from dslrun.runtime.model_pool import ModelPool

log = logging.getLogger("dslrun")


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
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    max_failed_fraction: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()
                if k not in ("notes", "outcomes", "max_failed_fraction") or v}

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


@dataclass
class RunContext:
    out_dir: Path
    spec_dir: Path
    cache: ScoreCache | None
    node: str = ""
    stats: NodeStats = field(default_factory=NodeStats)
    progress: Any = None  # runtime.progress.Progress, or None when quiet
    settings: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    models: ModelPool = field(default_factory=ModelPool)
    refs: dict[str, Any] = field(default_factory=dict)  # tables of steps named in this node's parameters

    def for_node(self, node: str, stats: NodeStats) -> RunContext:
        return RunContext(self.out_dir, self.spec_dir, self.cache, node, stats, self.progress,
                          self.settings, self.dry_run, self.models)
