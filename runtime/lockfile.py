"""The lock file written next to a run's output: what was run, on what, with what result.

It holds no timestamps or absolute paths, so two identical runs write the
same bytes and the file diffs cleanly in git.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dslrun.core.keys import cache_params, node_fingerprint
from dslrun.dsl.compile import Plan
from dslrun.operators.base import CachedOperator
from dslrun.runtime.data.id_column import HexIds
from dslrun.runtime.data.pool_files import atomic_write
from dslrun.runtime.execution.executor import RunResult

LOCK_NAME = "dslrun.lock.json"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _digest(source: str, table: Any) -> dict[str, str]:
    """A pool file by its bytes; a pool that is not one file (in memory, a folder, shards, a
    hub id) by the ids of the samples it gave, in order (ids are content hashes)."""
    if Path(source).is_file():
        return {"sha256": file_sha256(source)}
    if table is None:
        return {"ids_sha256": hashlib.sha256(b"").hexdigest()}
    stored = table.stored("id")
    ids = stored.joined(b"\n") if isinstance(stored, HexIds) else "\n".join(table.column("id").tolist()).encode("utf-8")
    return {"ids_sha256": hashlib.sha256(ids).hexdigest()}


def input_path(path: str, spec_dir: Path, cwd: Path) -> tuple[str, str]:
    """A pool's path as the lock records it, and what it is relative to: the spec's folder for the
    spec's own data, else the folder the run was started from (a `--set pool=...`), else absolute.
    Never `../../../../tmp/...` relative to a folder it has nothing to do with."""
    p = Path(path).resolve()
    for base, name in ((spec_dir.resolve(), "spec"), (cwd.resolve(), "cwd")):
        if p.is_relative_to(base):
            return p.relative_to(base).as_posix(), name
    return p.as_posix(), "absolute"


def build_lock(plan: Plan, result: RunResult, spec_text: str, overrides: dict[str, Any], version: str,
               out_dir: Path) -> dict[str, Any]:
    inputs, nodes, seeds = [], [], {}
    for name in plan.order:
        node = plan.nodes[name]
        op = node.op
        assert op is not None
        params = op.params.model_dump(mode="json")
        for key, value in params.items():
            if key == "path" and node.step.op == "load":
                if "://" in value:  # hf:// and memory:// pools are names, not paths
                    params[key], base = value, "uri"
                else:
                    params[key], base = input_path(value, plan.spec_dir, plan.cwd)
                inputs.append({"step": name, "path": params[key], "relative_to": base,
                               **_digest(value, result.tables.get(name))})
            if "seed" in key:
                seeds[f"{name}.{key}"] = value
        stats = result.stats.get(name)
        entry: dict[str, Any] = {"name": name, "op": op.name, "version": op.version, "params": params}
        if isinstance(op, CachedOperator):
            entry["fingerprint"] = node_fingerprint(op)
            entry["model"] = op.model_identity() or None
            entry["cache_params"] = cache_params(op)
        if stats is not None:
            entry["rows_in"], entry["rows_out"] = stats.rows_in, stats.rows_out
            entry["dropped"] = max(stats.rows_in - stats.rows_out, 0) if node.inputs else 0
            if stats.quarantined:
                entry["quarantined"] = stats.quarantined
            if stats.failed:
                entry["failed"] = stats.failed
        nodes.append(entry)
    return {
        "dslrun_version": version,
        "spec": {"file": Path(plan.spec.file).name, "sha256": hashlib.sha256(spec_text.encode()).hexdigest(),
                 "overrides": {k: _override(plan, k, v) for k, v in sorted(overrides.items())}},
        "inputs": inputs,
        "seeds": seeds,
        "nodes": nodes,
    }


def _override(plan: Plan, name: str, given: Any) -> Any:
    """A ``--set STEP.PARAM`` value as the step received it (typed: 4, not "4")."""
    step, _, key = name.partition(".")
    node = plan.nodes.get(step) if key else None
    if node is None or node.op is None or key not in type(node.op.params).model_fields:
        return given
    return node.op.params.model_dump(mode="json", include={key}).get(key, given)


def write_lock(out_dir: Path, lock: dict[str, Any]) -> Path:
    path = out_dir / LOCK_NAME

    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(lock, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")

    atomic_write(path, write)
    return path
