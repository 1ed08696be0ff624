"""DEITA score-first, diversity-aware filtering.

Source read: hkust-nlp/deita, ``src/deita/selection/filter/base.py``
(``IterativeFilter.filter``) and ``src/deita/selection/filter/combined_filter.py``
(``Combined_Filter._sort``).

Semantics (``batch_size=1``, DEITA's default):

1. Order the rows by score, highest first. DEITA calls pandas
   ``sort_values(ascending=False)``, whose default quicksort does not promise
   an order for equal scores; we sort stably, so equal scores keep their
   original row order and the result is deterministic.
2. The first row of that order is always kept (DEITA starts from
   ``filtered_indices = [0]``), whatever its neighbours.
3. Each later candidate is dropped when its cosine similarity to ANY row kept
   so far is greater than ``threshold`` (strictly greater), else it is kept.
4. Stop as soon as ``k`` rows are kept (``k=None`` means no limit, DEITA's
   ``data_size=-1``). The result is the kept row indices in score order.

Embeddings are L2-normalised here (row / its norm, in the input's float
precision, stored as float32), as DEITA does before its cosine; an all-zero row
stays zero, so its similarity to everything is 0. The norms are computed once
for all rows, so a row's unit vector is bit-for-bit the same in both functions.

``batch_size > 1`` is DEITA's ``batch_size`` option: after the first row, the
sorted candidates are taken ``batch_size`` at a time, and a candidate is dropped
when it is too similar to a row kept before its batch OR to ANY earlier
candidate of the same batch (the lower triangle of the batch's own similarity
matrix), even if that earlier candidate was itself dropped. So a batch can drop
rows that the one-by-one loop keeps (``a`` dropped for resembling a kept row,
``b`` resembling only ``a``: batch 1 keeps ``b``, a shared batch drops it).
DEITA stops after the batch that reaches ``k`` and cuts to ``k``, which equals
taking the first ``k`` kept rows, as here.

Float semantics: DEITA computes similarities in float32 (``torch.mm``) and
compares them with a Python float, which torch does in float32: the threshold
is rounded to float32 first (0.9 becomes 0.899999976), as here. Two
implementations that compute the same dot product with different BLAS calls (a
matrix-vector product here, a matrix-matrix product there) can disagree in the
last bit, and a pair sitting exactly on the threshold would then be dropped by
one and kept by the other. So both functions decide through ``_pairs_above``: a
float32 similarity farther from ``float32(threshold)`` than the worst-case
float32 rounding error of a ``d``-term dot product decides at once; a pair
closer than that is decided from the exact products of its two float32 vectors
(float64 sum, then ``math.fsum`` when even that is too close). The decision of
a pair therefore depends only on its two vectors, never on how the product was
batched, and both functions return identical ids.

Speed: ``deita_filter`` does, per chunk of candidates, one product with the
kept set and one within the chunk, instead of one per candidate. Before each
product a cheap bound (``_similar``: the first quarter of the coordinates plus
the norm of the rest, by Cauchy-Schwarz) clears the rows that cannot reach the
threshold, so those skip the full product; the bound is rigorous, so the ids
do not change.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["deita_filter", "deita_filter_plain"]


def deita_filter_plain(
    embeddings: np.ndarray,
    scores: np.ndarray,
    k: int | None = None,
    threshold: float = 0.9,
    *,
    batch_size: int = 1,
) -> np.ndarray:
    """Reference DEITA filter: one candidate (or one DEITA batch) per loop step."""
    x, norms, order, limit, thr = _prepare(embeddings, scores, k, threshold, batch_size)
    if limit == 0:
        return np.empty(0, dtype=np.int64)
    kept = np.empty((limit, x.shape[1]), dtype=np.float32)
    kept[0] = _unit(x, norms, order[:1])
    ids = [int(order[0])]
    for start in range(1, len(order), batch_size):
        if len(ids) >= limit:
            break
        batch = order[start : start + batch_size]
        vecs = _unit(x, norms, batch)
        prior = kept[: len(ids)]
        dead = np.zeros(len(batch), dtype=bool)
        dead[_pairs_above(vecs @ prior.T, vecs, prior, thr)[0]] = True
        if len(batch) > 1:
            inside = _mask(_pairs_above(vecs @ vecs.T, vecs, vecs, thr), len(batch))
            dead |= np.tril(inside, -1).any(axis=1)
        for row, idx in zip(vecs[~dead], batch[~dead]):
            if len(ids) < limit:
                kept[len(ids)] = row
                ids.append(int(idx))
    return np.asarray(ids, dtype=np.int64)


def deita_filter(
    embeddings: np.ndarray,
    scores: np.ndarray,
    k: int | None = None,
    threshold: float = 0.9,
    *,
    batch_size: int = 1,
    chunk: int = 256,
) -> np.ndarray:
    """Fast DEITA filter; returns exactly what ``deita_filter_plain`` returns.

    Candidates are taken ``chunk`` at a time (rounded up to whole DEITA
    batches). One matrix product against the kept set (``_similar``) drops every
    candidate that resembles an already-kept row; the survivors are then
    compared with each other, and only those that resemble an earlier survivor
    of the chunk (from an earlier batch) need the sequential rule "kept unless
    similar to an earlier survivor that was itself kept", walked in score order.
    """
    x, norms, order, limit, thr = _prepare(embeddings, scores, k, threshold, batch_size)
    if limit == 0:
        return np.empty(0, dtype=np.int64)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    step = -(-chunk // batch_size) * batch_size
    first = _unit(x, norms, order[:1])
    kept = np.empty((limit, x.shape[1]), dtype=np.float32)
    kept_scr = np.empty((limit, x.shape[1] // 4 + 1), dtype=np.float32)
    kept[0], kept_scr[0] = first, _screen(first)
    ids = [int(order[0])]
    pos = 1
    while len(ids) < limit and pos < len(order):
        cand = order[pos : pos + step]
        # DEITA's batches start at sorted position 1; a chunk holds whole batches.
        batch_of = (np.arange(pos, pos + len(cand)) - 1) // batch_size
        pos += len(cand)
        vecs = _unit(x, norms, cand)
        scr = _screen(vecs)
        m = len(ids)
        dead = np.zeros(len(cand), dtype=bool)
        dead[_similar(vecs, scr, kept[:m], kept_scr[:m], thr)[0]] = True
        earlier = np.tri(len(cand), k=-1, dtype=bool)
        if batch_size > 1:
            inside = _mask(_similar(vecs, scr, vecs, scr, thr, earlier), len(cand))
            same = batch_of[:, None] == batch_of[None, :]
            dead |= (inside & earlier & same).any(axis=1)
            alive = np.flatnonzero(~dead)
            clash = (inside & earlier & ~same)[np.ix_(alive, alive)]
        else:
            alive = np.flatnonzero(~dead)
            tri = earlier[: len(alive), : len(alive)]
            pairs = _similar(vecs[alive], scr[alive], vecs[alive], scr[alive], thr, tri)
            clash = _mask(pairs, len(alive)) & tri
        keep = np.ones(len(alive), dtype=bool)
        # Rows with no earlier look-alike survive outright; the others are
        # resolved in score order, each seeing the final fate of earlier rows.
        for i in np.flatnonzero(clash.any(axis=1)):
            if (clash[i, :i] & keep[:i]).any():
                keep[i] = False
        new = alive[keep][: limit - m]
        kept[m : m + len(new)], kept_scr[m : m + len(new)] = vecs[new], scr[new]
        ids.extend(cand[new].tolist())
    return np.asarray(ids, dtype=np.int64)


def _prepare(
    embeddings: np.ndarray,
    scores: np.ndarray,
    k: int | None,
    threshold: float,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.float32]:
    """Validate inputs; return rows, their norms, score order, row limit, threshold.

    Only the norms are computed for every row; the rows themselves are
    normalised when the scan reaches them (``_unit``), since with a small ``k``
    most rows are never looked at.
    """
    x = np.asarray(embeddings)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    sc = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (rows x dims), got shape {x.shape}")
    if sc.shape != (x.shape[0],):
        raise ValueError(f"scores must have shape ({x.shape[0]},), got {sc.shape}")
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    if not np.isfinite(norms).all():  # overflow in float32, or a NaN / inf entry
        x = x.astype(np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    # A NaN or inf anywhere in a row makes its squared norm NaN or inf.
    if not np.isfinite(norms).all() or not np.isfinite(sc).all():
        raise ValueError("embeddings and scores must be finite (no NaN or inf)")
    if k is not None and k < 0:
        raise ValueError(f"k must be >= 0 or None, got {k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.argsort(-sc, kind="stable")
    limit = len(order) if k is None else min(k, len(order))
    return x, norms, order, limit, np.float32(threshold)


def _unit(x: np.ndarray, norms: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """L2-normalised float32 copies of ``x[rows]``; a zero row stays zero.

    Element-wise, so a row comes out the same whichever batch it is in.
    """
    n = norms[rows, None]
    out = np.zeros((len(rows), x.shape[1]), dtype=x.dtype)
    return np.divide(x[rows], n, out=out, where=n > 0).astype(np.float32, copy=False)


def _mask(pairs: tuple[np.ndarray, np.ndarray], size: int) -> np.ndarray:
    """A ``size x size`` boolean matrix, True at the given (row, column) pairs."""
    out = np.zeros((size, size), dtype=bool)
    out[pairs] = True
    return out


def _margin(dims: int) -> np.float32:
    """A bound on |float32 dot - exact dot| for two unit vectors of ``dims`` floats.

    The rounding error of any summation order is at most d * 2^-24 * sum|a_i b_i|,
    and sum|a_i b_i| <= |a||b| = 1; doubled, plus a few ulps for the result.
    """
    return np.float32((2 * dims + 8) * 2.0**-24)


def _screen(unit: np.ndarray) -> np.ndarray:
    """Screening rows: the first d/4 coordinates, then the norm of the other 3d/4."""
    head = unit.shape[1] // 4
    tail = np.sqrt(np.einsum("ij,ij->i", unit[:, head:], unit[:, head:]))
    return np.concatenate([unit[:, :head], tail[:, None]], axis=1)


def _similar(
    a: np.ndarray,
    a_scr: np.ndarray,
    b: np.ndarray,
    b_scr: np.ndarray,
    thr: np.float32,
    only: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j) with ``sim(a[i], b[j]) > thr``, skipping rows a bound clears.

    By Cauchy-Schwarz on the tail coordinates, ``a.b <= a_head.b_head +
    |a_tail||b_tail|``, which is exactly ``a_scr . b_scr``: a product over d/4 + 1
    columns. Its float32 error (and that of the tail norms) stays below
    ``_margin``, so a row whose bounds are all ``<= thr - margin`` has no pair
    above ``thr``. Only the remaining rows get the full product. Random or
    dissimilar rows are cleared for a quarter of the work; near-duplicates are not.
    ``only`` marks the pairs that matter (say, ``j < i`` when ``a`` is ``b``, so
    that a row's similarity to itself does not force its full product); pairs
    outside it may still be returned.
    """
    bound = a_scr @ b_scr.T > thr - _margin(a.shape[1])
    if only is not None:
        bound &= only
    maybe = np.flatnonzero(bound.any(axis=1))
    if not maybe.size:
        return maybe, maybe
    sub = a[maybe]
    rows, cols = _pairs_above(sub @ b.T, sub, b, thr)
    return maybe[rows], cols


def _pairs_above(
    sims: np.ndarray, left: np.ndarray, right: np.ndarray, thr: np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the pairs whose similarity exceeds ``thr``.

    Entries closer to the threshold than float32 rounding can move a unit-vector
    dot product are re-decided from the exact products (see module docstring).
    """
    margin = _margin(left.shape[1])
    # One pass finds the few entries that may exceed; the rest are below.
    rows, cols = np.nonzero(sims > thr - margin)
    above = sims[rows, cols] > thr + margin
    near = np.flatnonzero(~above)
    if near.size:
        r, c = rows[near], cols[near]
        above[near] = _exact_above(left[r], right[c], float(thr))
    return rows[above], cols[above]


def _exact_above(a: np.ndarray, b: np.ndarray, thr: float) -> np.ndarray:
    """Row-wise ``a[i] . b[i] > thr`` from exact float64 products of float32 inputs."""
    # A product of two float32 values is exact in float64; only the sum rounds.
    prods = a.astype(np.float64) * b.astype(np.float64)
    sums = prods.sum(axis=1)
    out = sums > thr
    tol = prods.shape[1] * 2.0**-51  # 4x the float64 summation error bound
    for i in np.flatnonzero(np.abs(sums - thr) <= tol):
        out[i] = math.fsum(prods[i].tolist()) > thr
    return out
