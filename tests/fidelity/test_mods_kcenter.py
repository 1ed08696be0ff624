"""MoDS k-center greedy against the released rule (CASIA-LM/MoDS ``kcenter_greedy.py``,
Google's active-learning ``kCenterGreedy``): keep each row's distance to its nearest
centre (Euclidean), repeatedly add the farthest row (``np.argmax``: lowest index on ties).
The reference is our own float64 transcription of that loop."""

from __future__ import annotations

import numpy as np

from dslrun.operators.selection.kcenter import kcenter_greedy


def kcenter_reference(x: np.ndarray, initial: list[int], k: int) -> list[int]:
    x = x.astype(np.float64)
    nearest = np.min(np.linalg.norm(x[:, None] - x[initial][None], axis=-1), axis=1)
    picks = []
    for _ in range(k):
        new = int(np.argmax(nearest))
        picks.append(new)
        nearest = np.minimum(nearest, np.linalg.norm(x - x[new], axis=-1))
    return picks


def test_kcenter_equals_the_released_loop():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 16)).astype(np.float32)
    assert kcenter_greedy(x, 25, initial=[7]).tolist() == kcenter_reference(x, [7], 25)


def test_kcenter_hand_case_on_a_line():
    x = np.array([[0.0], [1.0], [10.0], [4.0], [6.0]])
    # from 0: farthest 10 (row 2), then 4 and 6 both 4 away from {0, 10}: lowest index (row 3), then row 4 (2 away)
    assert kcenter_greedy(x, 3, initial=[0]).tolist() == [2, 3, 4] == kcenter_reference(x, [0], 3)
