"""Facility-location maximisation by lazy greedy (Superfiltering.D).

Sources read: tianyi-lab/Superfiltering, ``code_diversity_fla/do_fla.py``
(``FacilityLocationFunction(n, mode="dense", data=X, metric="euclidean")`` then
``maximize(budget, optimizer="LazyGreedy", stopIfZeroGain=False,
stopIfNegativeGain=False)`` on L2-normalised sentence embeddings), and
decile-team/submodlib: ``submodlib/helper.py`` (kernels),
``cpp/submod/FacilityLocation.cpp`` (gains) and
``cpp/optimizers/LazyGreedyOptimizer.cpp``.

Objective: ``f(S) = sum_i max(0, max_{j in S} s(i, j))`` over every row ``i``.
submodlib starts each row's "similarity to the nearest chosen row" at 0 and
only raises it, so a negative similarity never counts: the clip at 0 is theirs.

Kernels, as submodlib builds them:

- ``"euclidean"`` (what Superfiltering.D uses): ``s = exp(-|x_i - x_j| / d)``
  with ``d`` the embedding width (``gamma = 1 / n_features``), rows as given.
- ``"cosine"``: ``s = cos(x_i, x_j)``, negative values clipped at 0 as above.

Greedy: each step adds the row with the largest marginal gain
``sum_i max(0, s(i, j) - cover_i)``; ties go to the lowest row index (submodlib's
max-heap of ``(gain, index)`` prefers the highest index, a deliberate
difference). Lazy evaluation keeps a max-heap of stale upper bounds (gains only
shrink as ``S`` grows); the top is re-evaluated until a freshly computed gain
is on top, which is then the true maximum (up to float rounding). Stale
entries are refreshed ``probe`` at a time with one matrix product, since
computing one column costs nearly as much as computing a few.

Memory: the ``n x n`` kernel is never stored. The initial gains are summed over
blocks of ``block`` rows, and a column ``s(., j)`` is recomputed when needed.
Everything runs in float64: the Euclidean kernel of unit rows lies in
``[exp(-2/d), 1]``, a band too narrow for float32 (and for float32 dot products
in the ``|a|^2 + |b|^2 - 2ab`` expansion) to rank gains reliably.
"""

from __future__ import annotations

import heapq

import numpy as np

__all__ = ["facility_location"]


def facility_location(
    embeddings: np.ndarray,
    k: int,
    metric: str = "euclidean",
    *,
    block: int = 256,
    probe: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Lazy-greedy facility location; returns (row indices, gains) in selection order."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (rows x dims), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings must be finite (no NaN or inf)")
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    elif metric != "euclidean":
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    n = x.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, {n}], got {k}")
    if block < 1 or probe < 1:
        raise ValueError("block and probe must be >= 1")
    sq = np.einsum("ij,ij->i", x, x)

    every = np.arange(n)

    def kernel(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        dots = x[rows] @ x[cols].T
        if metric == "cosine":
            return dots
        d2 = sq[rows][:, None] + sq[cols][None, :] - 2.0 * dots
        # A row's distance to itself is 0, but the expansion leaves ~1e-15
        # there, which the square root would blow up to ~1e-7.
        _, r, c = np.intersect1d(rows, cols, assume_unique=True, return_indices=True)
        d2[r, c] = 0.0
        return np.exp(-np.sqrt(np.maximum(d2, 0.0)) / x.shape[1])

    cover = np.zeros(n, dtype=np.float64)  # max similarity to a chosen row, from 0

    def gains(cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sims = kernel(every, cols)
        return np.maximum(sims - cover[:, None], 0.0).sum(axis=0), sims

    initial = np.zeros(n, dtype=np.float64)
    for start in range(0, n, block):
        rows = every[start : start + block]
        initial += np.maximum(kernel(rows, every), 0.0).sum(axis=0)

    # Heap of (-bound, index): the smallest index wins among equal bounds.
    heap = [(-float(g), j) for j, g in enumerate(initial)]
    heapq.heapify(heap)
    fresh_at = np.zeros(n, dtype=np.int64)  # the step a bound was computed at
    picks: list[int] = []
    picked_gains: list[float] = []
    for step in range(k):
        columns: dict[int, np.ndarray] = {}
        while fresh_at[heap[0][1]] != step:
            stale = [heapq.heappop(heap)[1] for _ in range(min(probe, len(heap)))]
            fresh, sims = gains(np.asarray(stale))
            for col, (j, g) in enumerate(zip(stale, fresh)):
                heapq.heappush(heap, (-float(g), j))
                fresh_at[j] = step
                columns[j] = sims[:, col]
        neg_gain, best = heapq.heappop(heap)
        column = columns.get(best)
        if column is None:  # fresh since the initial pass: step 0 only
            column = kernel(every, np.asarray([best]))[:, 0]
        np.maximum(cover, column, out=cover)
        picks.append(best)
        picked_gains.append(-neg_gain)
    return np.asarray(picks, dtype=np.int64), np.asarray(picked_gains, dtype=np.float64)
