"""LESS matching (``less/data_selection/matching.py``), in numpy.

For each warm-up checkpoint ``k`` the influence of candidate ``i`` on target example
``j`` is the inner product of their unit-norm features (their cosine similarity);
checkpoints are summed with weights ``w_k`` = the average learning rate of epoch ``k``,
renormalised to sum to 1. A candidate's score is the mean over the target examples of
each subtask, then the maximum over subtasks (LESS reshapes the N × N_valid matrix into
N × n_subtasks × examples-per-subtask; here subtasks are named, so they may differ in size).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def checkpoint_weights(avg_lrs: Sequence[float]) -> np.ndarray:
    w = np.asarray(avg_lrs, dtype=np.float64)
    if (w < 0).any():
        raise ValueError(f"checkpoint weights must not be negative, got {list(avg_lrs)}")
    if w.sum() == 0:  # a one-step warm-up never left the schedule's zero start: weigh checkpoints alike
        return np.full(len(w), 1.0 / len(w))
    return w / w.sum()


def influence_matrix(candidates: np.ndarray, targets: np.ndarray,
                     weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """(N × T): Σ_k w_k · candidates[:, k] · targets[:, k]ᵀ, for features of shape (N|T) × K × dim."""
    if candidates.shape[1] != len(weights) or targets.shape[1] != len(weights):
        raise ValueError("one weight per checkpoint is needed")
    out = np.zeros((candidates.shape[0], targets.shape[0]), dtype=np.float64)
    for k, w in enumerate(weights):
        out += w * (candidates[:, k].astype(np.float32) @ targets[:, k].astype(np.float32).T)
    return out


def subtask_scores(sim: np.ndarray, subtasks: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(score, index of the best subtask) per row: mean over each subtask's columns, max over subtasks."""
    names = list(dict.fromkeys(subtasks))
    if sim.shape[1] != len(subtasks):
        raise ValueError("one subtask label per target example is needed")
    labels = np.asarray(list(subtasks), dtype=object)
    means = np.stack([sim[:, labels == n].mean(axis=1) for n in names], axis=1)
    best = means.argmax(axis=1)
    return means[np.arange(len(sim)), best], best


def subtask_names(subtasks: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(subtasks))
