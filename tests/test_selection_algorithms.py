"""Selection kernels: hand-checked cases, DEITA fast == plain, greedy properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dslrun.operators.selection.coverage import tag_coverage
from dslrun.operators.selection.deita import _pairs_above, deita_filter, deita_filter_plain
from dslrun.operators.selection.facility import facility_location
from dslrun.operators.selection.kcenter import kcenter_greedy


def at_angles(*degrees: float) -> np.ndarray:
    """Unit vectors in the plane; cos of the angle between two is their similarity."""
    rad = np.radians(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


def both_deita(emb, scores, k=None, threshold=0.9, **kw) -> list[int]:
    """Run both DEITA implementations, insist they agree, return the ids."""
    plain = deita_filter_plain(emb, scores, k, threshold, batch_size=kw.get("batch_size", 1))
    fast = deita_filter(emb, scores, k, threshold, **kw)
    assert plain.tolist() == fast.tolist()
    return plain.tolist()


# ---------------------------------------------------------------- DEITA


def test_deita_hand_case_with_score_tie():
    # rows: 0 at 0deg, 1 at 10deg, 2 at 90deg, 3 at 80deg.
    # Rows 1 and 2 tie on 0.9: the stable sort keeps 1 before 2.
    # 1 kept (first). 2: cos80 = 0.17 to row 1 -> kept.
    # 0: cos10 = 0.985 to row 1 -> dropped. 3: cos10 = 0.985 to row 2 -> dropped.
    emb = at_angles(0, 10, 90, 80)
    scores = np.array([0.5, 0.9, 0.9, 0.1])
    assert both_deita(emb, scores) == [1, 2]
    assert both_deita(emb, scores, k=1) == [1]
    # Looser threshold: cos10 = 0.985 is no longer "greater than 0.99".
    assert both_deita(emb, scores, threshold=0.99) == [1, 2, 0, 3]


def test_deita_tie_break_is_original_order():
    # Two identical rows with equal scores: the earlier row wins, the later is dropped.
    emb = at_angles(30, 30, 120)
    assert both_deita(emb, np.array([1.0, 1.0, 0.5])) == [0, 2]
    assert both_deita(emb[[1, 0, 2]], np.array([1.0, 1.0, 0.5])) == [0, 2]


def test_deita_ties_stable_beyond_insertion_sort_sizes():
    # 64 orthogonal rows (nothing is dropped), scores on two levels: the output
    # is the stable sort of the scores. (numpy's quicksort is stable only below
    # 16 elements, so small cases cannot tell.)
    scores = np.random.default_rng(0).integers(0, 2, 64).astype(float)
    expected = np.argsort(-scores, kind="stable").tolist()
    assert both_deita(np.eye(64), scores, chunk=10) == expected


def test_deita_decision_ignores_last_bit_of_the_product():
    # Another BLAS call may round a similarity one ulp either way; the decision
    # must not move. Thresholds sit exactly on observed similarities.
    rng = np.random.default_rng(2)
    unit = rng.standard_normal((40, 8))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    unit = unit.astype(np.float32)
    sims = unit @ unit.T
    for thr in sims[np.triu_indices(40, 1)][:25]:
        want = set(zip(*_pairs_above(sims, unit, unit, np.float32(thr))))
        for nudged in (np.nextafter(sims, np.float32(2)), np.nextafter(sims, np.float32(-2))):
            assert set(zip(*_pairs_above(nudged, unit, unit, np.float32(thr)))) == want


def test_deita_first_item_always_kept():
    # threshold -1: every pair counts as similar, yet the top-scored row is kept.
    emb = at_angles(0, 90, 180)
    assert both_deita(emb, np.array([0.1, 0.7, 0.3]), threshold=-1.0) == [1]
    assert both_deita(emb, np.array([0.1, 0.7, 0.3]), k=0) == []
    # Embedding magnitudes do not matter: rows are L2-normalised inside.
    assert both_deita(emb * [[5.0], [0.1], [3.0]], np.array([0.1, 0.7, 0.3])) == [1, 2, 0]


def test_deita_threshold_is_strict():
    # Orthogonal rows have similarity exactly 0: "0 > 0" is false, so both are kept.
    emb = np.eye(3)
    assert both_deita(emb, np.array([3.0, 2.0, 1.0]), threshold=0.0) == [0, 1, 2]
    assert both_deita(emb, np.array([3.0, 2.0, 1.0]), threshold=-1e-6) == [0]


def test_deita_batch_size_drops_behind_dropped_rows():
    # p at 0deg (best), q at 20deg, r at 40deg. cos20 = 0.94 > 0.9, cos40 = 0.77.
    # batch 1: q dropped (like p); r is unlike p, so kept.
    # batch 2: q and r share a batch; r resembles the earlier q, and DEITA drops it
    # although q itself was dropped.
    emb = at_angles(0, 20, 40)
    scores = np.array([3.0, 2.0, 1.0])
    assert both_deita(emb, scores, batch_size=1) == [0, 2]
    assert both_deita(emb, scores, batch_size=2) == [0]
    assert both_deita(emb, scores, batch_size=2, chunk=1) == [0]


def test_deita_rejects_bad_input():
    with pytest.raises(ValueError, match="scores"):
        deita_filter(np.ones((3, 2)), np.ones(2))
    with pytest.raises(ValueError, match="finite"):
        deita_filter_plain(np.ones((2, 2)), np.array([1.0, np.nan]))


def noisy_rows(rng: np.random.Generator, n: int, dims: int) -> np.ndarray:
    """Random rows where about half are noisy copies of earlier rows."""
    emb = rng.standard_normal((n, dims))
    for i in range(1, n):
        if rng.random() < 0.5:
            emb[i] = emb[rng.integers(i)] + rng.standard_normal(dims) * rng.uniform(0.0, 0.4)
    return emb


@st.composite
def deita_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 70))
    emb = noisy_rows(rng, n, draw(st.integers(2, 24)))
    scores = rng.integers(0, 4, n).astype(float)  # few levels: many ties
    unit = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    sims = (unit @ unit.T).ravel()
    # Half the time put the threshold exactly on an observed similarity.
    threshold = draw(st.one_of(st.floats(0.3, 0.999), st.sampled_from(sims.tolist()).map(float)))
    k = draw(st.one_of(st.none(), st.integers(0, n + 2)))
    return emb, scores, k, threshold


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=deita_cases(), chunk=st.integers(1, 40), batch_size=st.integers(1, 4))
def test_deita_fast_equals_plain(case, chunk, batch_size):
    emb, scores, k, threshold = case
    plain = deita_filter_plain(emb, scores, k, threshold, batch_size=batch_size)
    fast = deita_filter(emb, scores, k, threshold, batch_size=batch_size, chunk=chunk)
    assert fast.tolist() == plain.tolist()


def test_deita_property_data_really_drops():
    # Guard for the property test: its rows must make the filter drop many.
    rng = np.random.default_rng(0)
    kept = [len(both_deita(noisy_rows(rng, 60, 8), rng.random(60), chunk=9)) for _ in range(10)]
    assert sum(kept) < 0.8 * 600


# ---------------------------------------------------------------- k-center


def test_kcenter_hand_case_on_a_line():
    # x = 0, 1, 2, 10, 11; start from row 0 (x=0).
    # farthest from {0}: x=11 (row 4). Then nearest-centre distances are
    # 1, 2, 1 for x = 1, 2, 10: row 2. Then x=1 and x=10 tie at 1: lowest row, 1.
    x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    assert kcenter_greedy(x, 3, initial=[0]).tolist() == [4, 2, 1]
    assert kcenter_greedy(x, 4, initial=[0]).tolist() == [4, 2, 1, 3]


def test_kcenter_seed_determinism():
    x = np.random.default_rng(3).standard_normal((200, 8))
    a = kcenter_greedy(x, 20, seed=7)
    assert a.tolist() == kcenter_greedy(x, 20, seed=7).tolist()
    firsts = {int(kcenter_greedy(x, 1, seed=s)[0]) for s in range(10)}
    assert len(firsts) > 1
    assert len(set(a.tolist())) == 20


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_kcenter_farthest_point_property(metric):
    x = np.random.default_rng(5).standard_normal((300, 6))
    picks = kcenter_greedy(x, 25, metric=metric, seed=1).tolist()
    ref = x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x

    def dist(i: int) -> np.ndarray:
        if metric == "cosine":
            return 1.0 - ref @ ref[i]
        return np.linalg.norm(ref - ref[i], axis=1)

    nearest = dist(picks[0])
    for t, p in enumerate(picks[1:], start=1):
        others = np.setdiff1d(np.arange(len(x)), picks[:t])
        assert nearest[p] >= nearest[others].max() - 1e-5
        nearest = np.minimum(nearest, dist(p))


def test_kcenter_duplicates_and_limits():
    x = np.ones((5, 3))
    assert sorted(kcenter_greedy(x, 5, seed=0).tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="k must be"):
        kcenter_greedy(x, 5, initial=[0])
    assert kcenter_greedy(x, 0).tolist() == []


# ---------------------------------------------------------------- InsTag coverage


def test_tag_coverage_hand_case():
    tags = [["a"], ["a", "b", "c"], ["b", "c"], ["d"], ["a", "b"], []]
    # sorted by tag count (stable): 1(3) 2(2) 4(2) 0(1) 3(1) 5(0)
    # pass 1, covered {}: 1 adds a,b,c -> take; 2, 4, 0 add nothing; 3 adds d
    #   -> take; 5 has no tags. taken [1, 3]
    # pass 2, covered reset: 2 adds b,c -> take; 4 adds a -> take; 0 adds
    #   nothing. taken [2, 4]
    # pass 3: 0 adds a -> take. taken [0]
    # pass 4: only the untagged 5 is left; nothing is taken, so stop.
    assert tag_coverage(tags, 10) == [1, 3, 2, 4, 0]
    assert tag_coverage(tags, 3) == [1, 3, 2]
    assert tag_coverage(tags, 10, fill_untagged=True) == [1, 3, 2, 4, 0, 5]
    assert tag_coverage(tags, 0) == []


def test_tag_coverage_counts_distinct_tags():
    # ["x","x","x"] has one distinct tag, so it sorts after the two-tag rows:
    # order 1, 2, 0. Pass 1 takes 1 (y, z) and 2 (adds x); pass 2 takes 0.
    # Counting repeats would put row 0 first and give [0, 1, 2].
    assert tag_coverage([["x", "x", "x"], ["y", "z"], ["x", "y"]], 3) == [1, 2, 0]


# ---------------------------------------------------------------- facility location


def fl_kernel(x: np.ndarray, metric: str) -> np.ndarray:
    """The full float64 kernel, computed directly (not by the module's expansion)."""
    if metric == "cosine":
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        return u @ u.T
    return np.exp(-np.linalg.norm(x[:, None, :] - x[None, :, :], axis=2) / x.shape[1])


def naive_facility(sims: np.ndarray, k: int) -> tuple[list[int], list[float], float]:
    """Plain greedy (lowest index wins ties); also the smallest best-vs-runner-up gap."""
    cover = np.zeros(len(sims))
    picks, gains, gap = [], [], np.inf
    for _ in range(k):
        g = np.maximum(sims - cover[:, None], 0.0).sum(axis=0)
        g[picks] = -np.inf
        j = int(np.argmax(g))
        if len(g) - len(picks) > 1:
            gap = min(gap, g[j] - np.partition(g, -2)[-2])
        picks.append(j)
        gains.append(float(g[j]))
        cover = np.maximum(cover, sims[:, j])
    return picks, gains, gap


# memory_mb=0 forces the path that recomputes columns into a tiny cache; the
# default keeps the whole kernel. Both store 1 - s as float32, so gains carry
# ~1e-7 relative error against the float64 reference.
STORES = pytest.mark.parametrize("memory_mb", [0, 512])
TOL = 1e-5


@STORES
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("seed", range(8))
def test_facility_lazy_equals_naive(metric, seed, memory_mb):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((int(rng.integers(5, 40)), int(rng.integers(2, 9)))) * 2.0
    k = int(rng.integers(1, len(x) + 1))
    picks, gains = facility_location(
        x, k, metric, memory_mb=memory_mb, block=3, probe=int(rng.integers(1, 6))
    )
    sims = fl_kernel(x, metric)
    # Every lazy pick is a true greedy pick: its gain is the best marginal gain
    # given the same earlier picks. Exact ties are common (two isolated rows
    # that only cover each other gain 1 + s - c_a - c_b either way), and float
    # noise may break them either way, so compare gains, not indices, there.
    cover = np.zeros(len(x))
    for t, j in enumerate(picks.tolist()):
        g = np.maximum(sims - cover[:, None], 0.0).sum(axis=0)
        g[picks[:t]] = -np.inf
        assert g[j] == pytest.approx(g.max(), abs=TOL)
        assert gains[t] == pytest.approx(g[j], abs=TOL)
        cover = np.maximum(cover, sims[:, j])
    ref_picks, ref_gains, gap = naive_facility(sims, k)
    np.testing.assert_allclose(gains, ref_gains, rtol=0, atol=TOL)
    if gap > 2 * TOL:  # no near-tie anywhere: the very same indices
        assert picks.tolist() == ref_picks


@STORES
@pytest.mark.parametrize(("metric", "k"), [("euclidean", 8), ("cosine", 10)])
def test_facility_lazy_equals_naive_without_ties(metric, k, memory_mb):
    # Early steps of this data have no near-ties (checked), so indices must match.
    rng = np.random.default_rng(42)
    x = rng.standard_normal((40, 4)) * rng.uniform(0.5, 3.0, (40, 1))
    picks, _ = facility_location(x, k, metric, memory_mb=memory_mb, block=4, probe=2)
    ref_picks, _, gap = naive_facility(fl_kernel(x, metric), k)
    assert gap > 1e-3
    assert picks.tolist() == ref_picks


def test_facility_hand_case_clusters():
    # Three rows near 0deg, one at 180deg, cosine metric. Similarities to the
    # 180deg row are negative and count as 0. Gains of the cluster rows:
    # row 1: 1 + 2cos5 = 2.992; rows 0, 2: 1 + cos5 + cos10 = 2.981; row 3: 1.
    # After row 1, row 3 gains 1 (only itself); rows 0, 2 gain 1 - cos5 + 0.
    x = at_angles(-5, 0, 5, 180)
    picks, gains = facility_location(x, 2, "cosine")
    assert picks.tolist() == [1, 3]
    c5 = math.cos(math.radians(5))
    np.testing.assert_allclose(gains, [1 + 2 * c5, 1.0], atol=1e-7)


def test_facility_gains_shrink_and_sum_to_objective():
    x = np.random.default_rng(11).standard_normal((120, 5))
    picks, gains = facility_location(x, 30, "euclidean", memory_mb=0, block=17, probe=4)
    assert np.all(np.diff(gains) <= 1e-9)
    dist = np.linalg.norm(x[:, None, :] - x[None, picks, :], axis=2)
    objective = np.exp(-dist / x.shape[1]).max(axis=1).sum()
    assert gains.sum() == pytest.approx(objective, rel=1e-6)


# ---------------------------------------------------------------- kNN distance


def test_knn_distance_by_hand():
    from dslrun.operators.selection.knn import knn_distance

    x = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.0]])
    np.testing.assert_allclose(knn_distance(x, 1), [1, 1, 2, 4])
    np.testing.assert_allclose(knn_distance(x, 2), [3, 2, 3, 6])
    np.testing.assert_allclose(knn_distance(x, 2, stat="mean"), [2, 1.5, 2.5, 5])
    assert np.isnan(knn_distance(x, 4)).all()  # fewer than k other rows


def test_knn_distance_chunks_and_cosine_match_brute_force():
    from dslrun.operators.selection.knn import knn_distance

    x = np.random.default_rng(1).normal(size=(50, 8))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    d = 1 - unit @ unit.T
    np.fill_diagonal(d, np.inf)
    want = np.sort(d, axis=1)[:, 5]
    np.testing.assert_allclose(knn_distance(x, 6, metric="cosine", chunk=7), want, atol=1e-9)
    e = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.fill_diagonal(e, np.inf)
    np.testing.assert_allclose(knn_distance(x, 3, chunk=16), np.sort(e, axis=1)[:, 2], atol=1e-9)
