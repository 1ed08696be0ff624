"""Honest outcomes: say so when a step keeps nothing, or much less than it was given.

A selection that silently comes out empty (``ifd.sel --set limit=20``: 5 % of 19 rows is
0 rows) looks like success. These checks add a warning to the step's statistics; the run
prints each one as a ``warning:`` line and the report shows them as a banner.
"""

from __future__ import annotations

from typing import Any

from dslrun.core.context import NodeStats

DEFAULT_WARN_KEPT_BELOW = 0.01  # a step that keeps fewer than 1 % of its input rows is worth a line


def kept_warning(stats: NodeStats, has_inputs: bool, share: float) -> str | None:
    """A warning when a step that was given rows kept none, or fewer than ``share`` of them."""
    if not has_inputs or stats.rows_in == 0 or stats.rows_out >= stats.rows_in:
        return None
    if stats.rows_out == 0:
        return f"kept 0 of {stats.rows_in} rows"
    if stats.rows_out < share * stats.rows_in:
        return (f"kept {stats.rows_out} of {stats.rows_in} rows ({100 * stats.rows_out / stats.rows_in:.2g}%), "
                f"fewer than {100 * share:g}% (--warn-kept-below)")
    return None


def check_kept(stats: NodeStats, has_inputs: bool, settings: Any) -> None:
    share = getattr(settings, "warn_kept_below", None)
    line = kept_warning(stats, has_inputs, DEFAULT_WARN_KEPT_BELOW if share is None else float(share))
    if line is not None:
        stats.warnings.append(line)


def warning_lines(order: list[str], stats: dict[str, NodeStats]) -> list[str]:
    """``step: message`` for every warning, in step order, each once."""
    lines: list[str] = []
    for name in order:
        s = stats.get(name)
        for w in dict.fromkeys(s.warnings if s else []):
            lines.append(f"{name}: {w}")
    return lines
