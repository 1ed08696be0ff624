"""What an operator may use while it runs: where to write, the cache, progress, settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dslrun.runtime.cache.store import ScoreStore
from dslrun.runtime.models.resident import ModelPool

log = logging.getLogger("dslrun")


@dataclass
class NodeStats:
    rows_in: int = 0
    rows_out: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    computed: int = 0
    failed: int = 0
    quarantined: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "notes" or v}


@dataclass
class RunContext:
    out_dir: Path
    spec_dir: Path
    cache: ScoreStore | None
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
