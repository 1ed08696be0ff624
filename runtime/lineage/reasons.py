"""Why a step dropped a row, worked out after the run from the step's input, output and parameters.

Each function gets the operator, its input tables, its output and the positions (in
the first input) of the rows it dropped, and returns one reason per dropped row.
Everything here is recomputed from columns the run already holds (expressions,
text keys, vectors), so no operator has to keep a log while it runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from dslrun.core.expr import evaluate
from dslrun.runtime.data.table import as_column

CHUNK = 1 << 20  # dropped rows whose reasons are made at a time
Reasons = Callable[[Any, list[Any], Any, np.ndarray], "list[str] | np.ndarray"]


def _text(expr: Any) -> str:
    from dslrun.dsl.emit import expr_text

    return expr_text(expr)


def _num(v: Any) -> str:
    if v is None or isinstance(v, float) and math.isnan(v):
        return "missing"
    return f"{v:.6g}" if isinstance(v, (float, np.floating)) else str(v)


def rank(op: Any, inputs: list[Any], out: Any, lost: np.ndarray) -> np.ndarray:
    from dslrun.operators.filter import truthy

    p, table = op.params, inputs[0]
    passed = truthy(evaluate(p.where, table)) if p.where is not None else np.ones(len(table), bool)
    scores = np.asarray(evaluate(p.by, table))
    kept_scores = np.asarray(evaluate(p.by, out)) if len(out) else np.array([])
    finite = [float(s) for s in kept_scores if s is not None and not (isinstance(s, float) and math.isnan(s))]
    cut = (min(finite) if p.descending else max(finite)) if finite else None
    how = f"top {p.top}" if p.top is not None else f"fraction {p.fraction:g}" if p.fraction is not None else "all"
    by = _text(p.by)
    where = f"`where: {_text(p.where)}` is false" if p.where is not None else ""
    side = "below" if p.descending else "above"
    tail = f"; the cut ({how}) kept no row" if cut is None else f", {side} the cut-off {_num(cut)} ({how}, {len(out)} kept)"
    # A pool of millions drops most rows here: each distinct score is formatted once (per
    # chunk of rows, so the sorting behind it holds one chunk's copies, not the pool's).
    texts = np.empty(len(lost), dtype=object)
    for lo in range(0, len(lost), CHUNK):
        values = scores[lost[lo:lo + CHUNK]]
        if values.dtype.kind in "biuf":
            distinct, which = np.unique(values, return_inverse=True)
            texts[lo:lo + len(values)] = as_column([f"{by} = {_num(v)}{tail}" for v in distinct.tolist()],
                                                   "any")[which.reshape(-1)]
        else:
            texts[lo:lo + len(values)] = as_column([f"{by} = {_num(v)}{tail}" for v in values.tolist()], "any")
    if p.where is not None:
        texts[~passed[lost]] = where
    return texts


def filter_(op: Any, inputs: list[Any], out: Any, lost: np.ndarray) -> list[str]:
    return [f"`where: {_text(op.params.where)}` is false"] * len(lost)


def dedup(op: Any, inputs: list[Any], out: Any, lost: np.ndarray) -> list[str]:
    table = inputs[0]
    keys = op._keys(table)
    rows = table.column("_row").tolist() if "_row" in table else [None] * len(table)
    first: dict[Any, tuple[str, Any]] = {}
    for k, sid, row in zip(keys, table.ids.tolist(), rows):
        first.setdefault(k, (sid, row))
    return [f"duplicate ({op.params.method}, on {op.params.on}) of row {first[keys[i]][1]} "
            f"(id {first[keys[i]][0]}), the first occurrence, which it kept" for i in lost]


def sample(op: Any, inputs: list[Any], out: Any, lost: np.ndarray) -> list[str]:
    p = op.params
    size = f"n {p.n}" if p.n is not None else f"fraction {p.fraction:g}"
    return [f"not drawn by the seeded random sample ({size}, seed {p.seed})"] * len(lost)


def diverse_sample(op: Any, inputs: list[Any], out: Any, lost: np.ndarray) -> list[str]:
    p, table = op.params, inputs[0]
    if p.method != "deita" or not len(out):
        return [f"not among the {p.k} chosen by {p.method}"] * len(lost)
    from dslrun.operators.diverse_sample import vectors

    scores = np.asarray(evaluate(p.by, table), dtype=np.float64)
    kept_scores = np.asarray(evaluate(p.by, out), dtype=np.float64)
    last = float(np.nanmin(kept_scores))
    kept_vecs = _unit(vectors(out.column(p.embedding)))
    kept_ids = out.ids.tolist()
    reasons = []
    for i in lost:
        if not scores[i] >= last:  # DEITA stopped at k before it reached this score (or it has none)
            reasons.append(f"{_text(p.by)} = {_num(scores[i])}: {p.k} samples were kept before it "
                           f"(the last at {_num(last)})")
            continue
        sims = kept_vecs @ _unit(vectors(table.column(p.embedding)[i:i + 1]))[0]
        before = kept_scores >= scores[i]  # it was compared with the samples kept before it
        sims = np.where(before, sims, -np.inf) if before.any() else sims
        j = int(np.argmax(sims))
        reasons.append(f"cosine similarity {sims[j]:.4f} to kept id {kept_ids[j]} (threshold {p.threshold:g})")
    return reasons


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1, norms)


REASONS: dict[str, Reasons] = {"rank": rank, "filter": filter_, "dedup": dedup, "sample": sample,
                               "diverse-sample": diverse_sample}


def reasons_for(op: Any, inputs: list[Any], out: Any, lost: np.ndarray) -> list[str] | np.ndarray:
    fn = REASONS.get(op.name)
    if fn is None:
        return [f"not kept by {op.name}"] * len(lost)
    try:
        return fn(op, inputs, out, lost)
    except Exception as e:  # a reason is a courtesy: never fail the run over one
        return [f"not kept by {op.name} (reason unavailable: {type(e).__name__})"] * len(lost)
