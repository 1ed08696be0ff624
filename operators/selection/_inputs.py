"""Input checks shared by the embedding-based kernels."""

from __future__ import annotations

import numpy as np


def embedding_matrix(embeddings: np.ndarray, metric: str, dtype: type = np.float32) -> np.ndarray:
    """A finite 2-D matrix; rows L2-normalised for ``cosine`` (a zero row stays zero)."""
    x: np.ndarray = np.asarray(embeddings, dtype=dtype)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (rows x dims), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings must be finite (no NaN or inf)")
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    elif metric != "euclidean":
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    return x
