"""``dslrun why RUN_DIR ID_OR_ROW``: one sample's path through the steps, from ``pool.scores.parquet``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dslrun.runtime.lineage.pool_scores import NAME


class WhyError(Exception):
    pass


def find(run_dir: Path, key: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of ``pool.scores.parquet`` whose id is ``key``, or whose row number it is."""
    import pyarrow.parquet as pq

    path = run_dir / NAME
    if not path.is_file():
        raise WhyError(f"{path} not found: is {run_dir} the output folder of a dslrun run (dslrun ≥ this version)?")
    table = pq.read_table(path)
    steps = json.loads((table.schema.metadata or {}).get(b"dslrun.steps", b"[]"))
    rows = table.to_pylist()
    hits = [r for r in rows if r["id"] == key]
    if not hits and key.lstrip("-").isdigit():
        hits = [r for r in rows if r["row"] == int(key)]
    if not hits:
        raise WhyError(f"no sample with id or row `{key}` among the {len(rows)} loaded samples of {run_dir}")
    return hits, steps


def _value(v: Any) -> str:
    if isinstance(v, float):
        return "null" if math.isnan(v) else f"{v:.6g}"
    return "null" if v is None else json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v


def explain(row: dict[str, Any], steps: list[dict[str, Any]]) -> list[str]:
    lines = [f"sample {row['id']} (row {row['row']} of `{row['pool']}`): "
             + ("KEPT" if row["kept"] else f"dropped by `{row['dropped_by']}`" if row["dropped_by"] else "not kept")]
    width = max([len(s["name"]) for s in steps] + [4])
    reached = True
    for s in steps:
        if s["op"] == "load" and s["name"] != row["pool"]:
            continue
        if not reached:
            lines.append(f"  {s['name']:<{width}}  {s['op']:<14} (not reached)")
            continue
        shown = [f"{c} = {_value(row.get(c))}" for c in s["columns"] if c in row and c != "id"]
        if s["name"] == row["dropped_by"]:
            lines.append(f"  {s['name']:<{width}}  {s['op']:<14} DROPPED: {row['drop_reason']}")
            reached = False
        else:
            lines.append(f"  {s['name']:<{width}}  {s['op']:<14} " + (", ".join(shown) if shown else "passed"))
    return lines


def why(run_dir: Path, key: str) -> str:
    hits, steps = find(run_dir, key)
    return "\n".join(line for r in hits for line in explain(r, steps))
