"""LESS matching against the released rule (princeton-nlp/LESS ``data_selection/matching.py``):
influence = Σ_k lr_k / Σ lr · (candidate features_k · target features_kᵀ), then the mean
over each subtask's target examples and the max over subtasks. Hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest

from dslrun.operators.influence.match import checkpoint_weights, influence_matrix, subtask_scores


def test_matching_hand_computed():
    # 2 candidates, 2 checkpoints, 3 target examples (subtasks a, a, b), 2-d unit features
    cand = np.array([[[1, 0], [0, 1]], [[0, 1], [1, 0]]], dtype=np.float32)
    targ = np.array([[[1, 0], [1, 0]], [[0, 1], [0, 1]], [[0.6, 0.8], [0.8, 0.6]]], dtype=np.float32)
    w = checkpoint_weights([3e-5, 1e-5])  # average learning rates of the two epochs
    assert w.tolist() == pytest.approx([0.75, 0.25])
    sim = influence_matrix(cand, targ, w)
    # candidate 0: t0 = .75*1 + .25*0 = .75; t1 = .75*0 + .25*1 = .25; t2 = .75*.6 + .25*.6 = .6
    # candidate 1: t0 = .25; t1 = .75; t2 = .75*.8 + .25*.8 = .8
    assert sim == pytest.approx(np.array([[0.75, 0.25, 0.6], [0.25, 0.75, 0.8]]), abs=1e-6)
    score, best = subtask_scores(sim, ["a", "a", "b"])
    assert score.tolist() == pytest.approx([0.6, 0.8]) and best.tolist() == [1, 1]  # mean(a) = .5 both
