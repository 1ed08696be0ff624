"""Distance of every row to its k-th nearest other row: an exact, chunked kernel.

Instruction-Mining's ``KNN-i`` indicator is the distance of a sample to its i-th
nearest neighbour in a sentence-embedding space: a large value means the sample is
unlike the rest of the pool.
"""

from __future__ import annotations

import numpy as np

from dslrun.operators.selection._inputs import embedding_matrix


def knn_distance(embeddings: np.ndarray, k: int, metric: str = "euclidean", stat: str = "kth",
                 chunk: int = 2048) -> np.ndarray:
    """Per row: the distance to its k-th nearest other row (``kth``) or the mean over the k nearest (``mean``).

    Cosine distance is 1 - cosine similarity. A row's own copy is excluded; exact
    duplicates elsewhere in the pool count as neighbours at distance 0. With fewer than
    k other rows the value is NaN.
    """
    x = embedding_matrix(embeddings, metric, dtype=np.float64)
    n = len(x)
    out = np.full(n, np.nan)
    if n <= k:
        return out
    sq = np.einsum("ij,ij->i", x, x)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        dots = x[start:stop] @ x.T
        if metric == "cosine":
            d = 1.0 - dots
        else:
            d = np.sqrt(np.maximum(sq[start:stop, None] + sq[None, :] - 2.0 * dots, 0.0))
        d[np.arange(stop - start), np.arange(start, stop)] = np.inf  # not its own neighbour
        nearest = np.partition(d, k - 1, axis=1)[:, :k]
        out[start:stop] = nearest.max(axis=1) if stat == "kth" else nearest.mean(axis=1)
    return out
