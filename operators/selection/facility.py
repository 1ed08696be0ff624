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
entries are refreshed in batches (``probe``, doubling while the top stays
stale), since one batch of kernel rows costs little more than one row. On
clustered data few entries need refreshing per step; on near-uniform data
(random vectors) lazy greedy degrades towards plain greedy, as everywhere.

Memory and precision: the kernel is computed in float64 and stored as float32
``u = 1 - s``, which keeps the Euclidean kernel's narrow band
``[exp(-2/d), 1]`` (unit rows) resolvable; gains sum ``max(0, u_cover - u)``
in float64. When the whole kernel fits in ``memory_mb`` (``4 n^2`` bytes:
400 MB at 10k rows) it is computed once, by blocks of ``block`` rows.
Otherwise it is never built: the initial gains are summed over row blocks, and
kernel rows are computed from the embeddings when a gain is refreshed, kept in
a least-recently-used cache of ``memory_mb``. Each refresh costs O(n) from the
store, or O(n d) on a cache miss.
"""

from __future__ import annotations

import heapq

import numpy as np

from ._inputs import embedding_matrix

__all__ = ["facility_location"]


def facility_location(
    embeddings: np.ndarray,
    k: int,
    metric: str = "euclidean",
    *,
    memory_mb: int = 512,
    block: int = 256,
    probe: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Lazy-greedy facility location; returns (row indices, gains) in selection order."""
    x = embedding_matrix(embeddings, metric, np.float64)
    n = x.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, {n}], got {k}")
    if block < 1 or probe < 1:
        raise ValueError("block and probe must be >= 1")
    sq = np.einsum("ij,ij->i", x, x)

    def one_minus_sim(rows: np.ndarray | None, cols: np.ndarray | None) -> np.ndarray:
        """``1 - s`` between ``x[rows]`` and ``x[cols]`` (None: all rows)."""
        xr, xc = (x if idx is None else x[idx] for idx in (rows, cols))
        dots = xr @ xc.T
        if metric == "cosine":
            return 1.0 - dots
        every = np.arange(n)
        r, c = (every if idx is None else idx for idx in (rows, cols))
        d2 = sq[r][:, None] + sq[c][None, :] - 2.0 * dots
        # A row's distance to itself is 0, but the expansion leaves ~1e-15
        # there, which the square root would blow up to ~1e-7.
        _, ri, ci = np.intersect1d(r, c, assume_unique=True, return_indices=True)
        d2[ri, ci] = 0.0
        return -np.expm1(-np.sqrt(np.maximum(d2, 0.0)) / x.shape[1])

    # Kernel rows kept as float32, row-major: ``store[slot[j]]`` is u(j, .),
    # which is also column j (the kernel is symmetric). With room for all n
    # rows the initial pass fills it; otherwise it is a least-recently-used cache.
    capacity = min(n, max(probe, (memory_mb << 20) // (4 * max(n, 1))))
    store = np.empty((capacity, n), dtype=np.float32)
    slot = np.full(n, -1)
    owner = np.full(capacity, -1)
    used = np.full(capacity, -1)  # when a slot was last read; -1: empty
    initial = np.zeros(n)
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))
        u = one_minus_sim(rows, None)
        initial += np.maximum(1.0 - u, 0.0).sum(axis=0)
        if capacity == n:
            store[rows], slot[rows], owner[rows], used[rows] = u, rows, rows, 0

    clock = 0

    def kernel_rows(cols: np.ndarray) -> np.ndarray:
        """``u(j, .)`` for each ``j`` in ``cols`` (at most ``capacity`` of them)."""
        nonlocal clock
        clock += 1
        hit = slot[cols] >= 0
        used[slot[cols[hit]]] = clock  # newest, so not evicted below
        miss = cols[~hit]
        if miss.size:
            victims = np.argpartition(used, miss.size - 1)[: miss.size]
            gone = owner[victims]
            slot[gone[gone >= 0]] = -1
            store[victims] = one_minus_sim(miss, None)
            slot[miss], owner[victims], used[victims] = victims, miss, clock
        return store[slot[cols]]

    # 1 - (similarity to the nearest chosen row, from 0). Float32 like the
    # stored rows: a difference of two float32 values near each other is
    # exact, and the sums below accumulate in float64.
    uncovered = np.ones(n, dtype=np.float32)

    # Heap of (-bound, index): the smallest index wins among equal bounds.
    heap = [(-float(g), j) for j, g in enumerate(initial)]
    heapq.heapify(heap)
    fresh_at = np.zeros(n, dtype=np.int64)  # the step a bound was computed at
    widest = min(capacity, max(probe, (1 << 22) // max(n, 1)))  # n x batch near 32 MB
    picks: list[int] = []
    picked_gains: list[float] = []
    for step in range(k):
        size = probe
        while fresh_at[heap[0][1]] != step:
            stale = [heapq.heappop(heap)[1] for _ in range(min(size, len(heap)))]
            u = kernel_rows(np.asarray(stale))
            diff = np.subtract(uncovered[None, :], u, out=u)
            fresh = np.maximum(diff, 0.0, out=diff).sum(axis=1, dtype=np.float64)
            for j, g in zip(stale, fresh):
                heapq.heappush(heap, (-float(g), j))
                fresh_at[j] = step
            size = min(2 * size, widest)
        neg_gain, best = heapq.heappop(heap)
        np.minimum(uncovered, kernel_rows(np.asarray([best]))[0], out=uncovered)
        picks.append(best)
        picked_gains.append(-neg_gain)
    return np.asarray(picks, dtype=np.int64), np.asarray(picked_gains, dtype=np.float64)
