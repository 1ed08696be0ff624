"""What an operator may use while it runs: where to write, the cache, progress, settings.

Implements ``core/context.py: RunContext``; ``run_cached`` is the one way a whole-table
step runs per-sample work through the score cache."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dslrun.core.context import NodeStats
from dslrun.core.settings import RunSettings
from dslrun.runtime.cache.store import ScoreStore
from dslrun.runtime.config import run_settings
from dslrun.runtime.data.table import Table
from dslrun.runtime.models.resident import ModelPool

log = logging.getLogger("dslrun")


@dataclass
class RunContext:
    out_dir: Path
    spec_dir: Path
    cache: ScoreStore | None
    node: str = ""
    stats: NodeStats = field(default_factory=NodeStats)
    progress: Any = None  # runtime.progress.Progress, or None when quiet
    settings: RunSettings = field(default_factory=lambda: run_settings())
    dry_run: bool = False
    models: ModelPool = field(default_factory=ModelPool)
    refs: dict[str, Any] = field(default_factory=dict)  # tables of steps named in this node's parameters
    input_columns: dict[str, str] = field(default_factory=dict)  # types an empty table cannot show

    def for_node(self, node: str, stats: NodeStats) -> RunContext:
        return RunContext(self.out_dir, self.spec_dir, self.cache, node, stats, self.progress,
                          self.settings, self.dry_run, self.models)

    @property
    def cache_root(self) -> Path:
        return self.cache.path.parent if self.cache is not None else self.out_dir / ".dslrun"

    def run_cached(self, op: Any, table: Table, prepare: Callable[[], None] | None = None) -> Table:
        from dslrun.runtime.execution.sample_runner import run_sample_op

        return run_sample_op(op, table, self, prepare=prepare)

    def count_cached(self, op: Any, table: Table) -> tuple[int, int]:
        from dslrun.core.keys import node_fingerprint
        from dslrun.runtime.execution.sample_runner import unique_first

        uniq, _ = unique_first(table.ids)
        if self.cache is None or not op.cacheable:
            return len(uniq), 0
        return len(uniq), self.cache.count(node_fingerprint(op), uniq)
