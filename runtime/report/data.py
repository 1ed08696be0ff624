"""What the run report shows, as plain JSON-able data, gathered from a finished run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from dslrun.runtime.data.id_column import rows_with_id
from dslrun.runtime.data.pool_files import atomic_write

EXAMPLES = 3  # kept and dropped examples shown per filtering step
TEXT_CHARS = 280
BINS = 20
TEXT_COLUMNS = ("instruction", "input", "output")
TOP_TAGS = 30


def _numeric(col: np.ndarray) -> np.ndarray | None:
    if col.ndim != 1 or col.dtype.kind not in "fiub":
        return None
    vals = col.astype(float)
    vals = vals[np.isfinite(vals)]
    return vals if len(vals) else None


LOG_SPAN = 100.0  # positive values spanning more than this factor get log-spaced bins


def histogram(values: np.ndarray, bins: int = BINS) -> dict[str, Any]:
    """Counts per bin. Positive values over several orders of magnitude (perplexities with a few
    outliers) get log-spaced bins, or every value but the outliers would share one bar."""
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        return {"edges": [lo, hi], "counts": [int(len(values))], "n": int(len(values)), "min": lo, "max": hi}
    log = lo > 0 and hi / lo > LOG_SPAN
    edges_in = np.geomspace(lo, hi, bins + 1) if log else bins
    counts, edges = np.histogram(values, bins=edges_in)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts], "n": int(len(values)),
            "min": lo, "max": hi, "mean": float(values.mean()), "scale": "log" if log else "linear"}


def _example(table: Any, row: int, score_cols: list[str]) -> dict[str, Any]:
    ex: dict[str, Any] = {}
    for c in TEXT_COLUMNS:
        if c in table.column_names:
            text = str(table.value(c, row))
            ex[c] = text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + "…"
    for c in score_cols:
        v = table.value(c, row)
        v = v.item() if isinstance(v, np.generic) else v
        ex[c] = None if isinstance(v, float) and math.isnan(v) else v
    return ex


def _score_columns(table: Any) -> list[str]:
    skip = {"_row", "n_turns"}
    return [c for c in table.column_names if c not in skip and table.ndim(c) == 1
            and table.dtype(c).kind in "fiub" and _numeric(table.column(c)) is not None]


def dropped_by_step(out_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """The first ``EXAMPLES`` (id, reason) each step dropped, from ``pool.scores.parquet`` (the run's
    lineage), so the report shows the same reasons as that file and ``dslrun why``."""
    path = out_dir / "pool.scores.parquet"
    if not path.is_file():
        return {}
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    found: dict[str, list[tuple[str, str]]] = {}
    # A batch at a time: the file of a pool of millions is not read whole.
    for t in pq.ParquetFile(path).iter_batches(columns=["id", "dropped_by", "drop_reason"]):
        steps = t.column("dropped_by")
        for step in pc.unique(steps).to_pylist():  # a few steps
            have = found.setdefault(step, []) if step is not None else None
            if have is None or len(have) >= EXAMPLES:
                continue
            first = t.take(pc.indices_nonzero(pc.equal(steps, step))[:EXAMPLES - len(have)])
            have.extend(zip(first.column("id").to_pylist(), first.column("drop_reason").to_pylist()))
    return found


def node_section(plan: Any, name: str, stats: Any, tables: dict[str, Any],
                 dropped: dict[str, list[tuple[str, str]]] | None = None) -> dict[str, Any]:
    node = plan.nodes[name]
    out = tables.get(name)
    inputs = [tables[i] for i in node.inputs if i in tables]
    d: dict[str, Any] = {"name": name, "op": node.step.op, "rows_in": stats.rows_in if node.inputs else None,
                         "kept": stats.rows_out, "failed": stats.failed + stats.quarantined,
                         "seconds": round(stats.seconds, 3), "notes": list(stats.notes),
                         "warnings": list(dict.fromkeys(stats.warnings))}
    d["dropped"] = max(0, stats.rows_in - stats.rows_out) if len(node.inputs) == 1 else None
    if out is None:
        return d
    before = set(inputs[0].column_names) if inputs else set()
    d["histograms"] = {c: histogram(vals) for c in _score_columns(out)
                       if c not in before and (vals := _numeric(out.column(c))) is not None}
    d.update(_failures_and_tags(out, before))
    if len(inputs) == 1 and d["dropped"]:
        src = inputs[0]
        scores = [c for c in _score_columns(src) if c not in ("id",)][:6]
        d["kept_examples"] = [_example(out, r, [c for c in scores if c in out.column_names])
                              for r in range(min(EXAMPLES, len(out)))]
        if dropped is not None:  # from the lineage: the rows this step dropped, with its reason
            ids = src.stored("id")
            d["dropped_examples"] = [{**_example(src, int(rows[0]), scores), "why": why}
                                     for sid, why in dropped.get(name, []) if len(rows := rows_with_id(ids, sid))]
        else:
            kept_ids = set(out.ids.tolist())
            first = [i for i, sid in enumerate(src.ids.tolist()) if sid not in kept_ids][:EXAMPLES]
            d["dropped_examples"] = [_example(src, r, scores) for r in first]
    return d


def _failures_and_tags(out: Any, before: set[str]) -> dict[str, Any]:
    """Why this step's scores failed (``*_reason`` columns it added), and tag frequencies (InsTag)."""
    from collections import Counter

    extra: dict[str, Any] = {}
    added = [c for c in out.column_names if c not in before and out.ndim(c) == 1]
    reasons: Counter = Counter()
    for c in (c for c in added if c.endswith("_reason")):
        reasons.update(str(v).split(":")[0] for v in out.column(c).tolist() if v)
    if reasons:
        extra["failure_reasons"] = dict(reasons.most_common(10))
    for c in (c for c in added if c == "tags"):
        tags: Counter = Counter(t for ts in out.column(c).tolist() if isinstance(ts, list) for t in ts)
        if tags:
            extra["tag_counts"] = dict(tags.most_common(TOP_TAGS))
            extra["distinct_tags"] = len(tags)
    return extra


def load_profile(out_dir: Path) -> dict[str, Any] | None:
    """The spec's feasibility profile, when something wrote one (``profile.json``; see ``dslrun explain``)."""
    path = out_dir / "profile.json"
    return json.loads(path.read_text()) if path.is_file() else None


def collect(plan: Any, result: Any, out_dir: Path, profile: dict[str, Any] | None = None) -> dict[str, Any]:
    dropped = dropped_by_step(out_dir) if (out_dir / "pool.scores.parquet").is_file() else None
    nodes = [node_section(plan, n, result.stats[n], result.tables, dropped) for n in plan.order if n in result.stats]
    evaluations = []
    for n in plan.order:
        t = result.tables.get(n)
        ev = t.meta.get("evaluate") if t is not None and plan.nodes[n].step.op == "evaluate" else None
        if ev:
            evaluations.append(ev)
    return {"spec": plan.spec.file, "doc": plan.spec.doc or "", "out_dir": str(out_dir),
            "seconds": round(result.seconds, 3), "nodes": nodes, "evaluations": evaluations,
            "profile": profile if profile is not None else load_profile(out_dir)}


def write_report(plan: Any, result: Any, out_dir: Path, profile: dict[str, Any] | None = None) -> Path:
    from dslrun.runtime.report.html import render

    data = collect(plan, result, out_dir, profile)
    atomic_write(out_dir / "report.json",
                 lambda tmp: tmp.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8"))
    html = render(data, out_dir)
    path = out_dir / "report.html"
    atomic_write(path, lambda tmp: tmp.write_text(html, encoding="utf-8"))
    return path
