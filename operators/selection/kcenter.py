"""k-center greedy coreset (farthest-point traversal).

Source read: CASIA-LM/MoDS, ``diverse-data-selection/kcenter_greedy.py`` (a copy
of Google's active-learning ``kCenterGreedy``, after Sener & Savarese 2017,
"A Geometric Approach to Active Learning for CNNs"), called from
``diverse-data-selection/run.py`` with raw BERT [CLS] embeddings, Euclidean
distance and no initial centres.

Semantics:

1. Start from the given ``initial`` centres, or, when there are none, from one
   row drawn uniformly at random with ``numpy.random.default_rng(seed)``
   (``seed=None``: fresh OS entropy, not reproducible; MoDS draws it with the
   unseeded global ``np.random.choice``).
2. Keep, for every row, the distance to its nearest centre so far.
3. Repeatedly add the row whose nearest-centre distance is largest, then lower
   every row's distance with its distance to the new centre (one vectorised pass
   over the rows per step). Ties go to the lowest row index (``np.argmax``, as
   in MoDS). Rows already chosen are never chosen again, even when duplicates
   leave every remaining distance at 0 (MoDS would assert there).
4. Return the ``k`` newly chosen rows in the order chosen (the random first
   centre included); given ``initial`` centres are not repeated in the output.
   MoDS returns initial + new; prepend ``initial`` for that.

Metrics: ``"euclidean"`` on the rows as given (MoDS), or ``"cosine"``
(1 - cosine similarity of the L2-normalised rows). Distances come from
``|x|^2 + |c|^2 - 2 x.c`` in float32, clipped at 0; near-equal distances can
therefore order differently from a float64 computation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._inputs import embedding_matrix

__all__ = ["kcenter_greedy"]


def kcenter_greedy(
    embeddings: np.ndarray,
    k: int,
    metric: str = "euclidean",
    seed: int | None = 0,
    initial: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Choose ``k`` rows by farthest-point traversal; indices in selection order."""
    x = embedding_matrix(embeddings, metric, np.float32)
    n = x.shape[0]
    start = np.unique(np.asarray([] if initial is None else initial, dtype=np.int64))
    if start.size and (start.min() < 0 or start.max() >= n):
        raise ValueError(f"initial centres must be row indices in [0, {n})")
    if k < 0 or k > n - start.size:
        raise ValueError(f"k must be in [0, {n - start.size}] (rows not already centres), got {k}")
    if k == 0:
        return np.empty(0, dtype=np.int64)

    sq = np.einsum("ij,ij->i", x, x)  # squared norms, for the Euclidean expansion

    def dist_to(center: int) -> np.ndarray:
        dots = x @ x[center]
        if metric == "cosine":
            return 1.0 - dots
        return np.sqrt(np.maximum(sq + sq[center] - 2.0 * dots, 0.0))

    chosen = np.zeros(n, dtype=bool)
    nearest = np.full(n, np.inf, dtype=np.float32)
    for c in start:
        np.minimum(nearest, dist_to(int(c)), out=nearest)
        chosen[c] = True
    picks: list[int] = []
    if not start.size:
        first = int(np.random.default_rng(seed).integers(n))
        np.minimum(nearest, dist_to(first), out=nearest)
        chosen[first] = True
        picks.append(first)
    while len(picks) < k:
        # -1 is below every real distance, so a chosen row is never picked twice.
        nxt = int(np.argmax(np.where(chosen, np.float32(-1.0), nearest)))
        np.minimum(nearest, dist_to(nxt), out=nearest)
        chosen[nxt] = True
        picks.append(nxt)
    return np.asarray(picks, dtype=np.int64)
