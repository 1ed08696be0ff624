"""Score combination: reciprocal-rank fusion, per-group quotas."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dslrun.core.expr import evaluate
from dslrun.dsl.parse import parse_expression
from dslrun.operators.quota import equal_quotas, proportional_quotas
from dslrun.runtime.data.table import Table, as_column
from testkit.cli import dslrun_here, write_pool


def test_rrf_by_hand_with_ties_and_missing():
    t = Table({"id": as_column(list("abcd"), "str"), "x": np.array([3.0, 1.0, 2.0, np.nan]),
               "y": np.array([1.0, 1.0, 3.0, 2.0])})
    got = evaluate(parse_expression("rrf(x, y)"), t, t.ids)
    # x ranks a=1, c=2, b=3, d missing; y ranks c=1, d=2, a=b=3 (a tie shares the best rank)
    want = [1 / 61 + 1 / 63, 1 / 63 + 1 / 63, 1 / 62 + 1 / 61, 1 / 62]
    np.testing.assert_allclose(got, want)
    # independent of pool order
    perm = [2, 0, 3, 1]
    t2 = t.take(np.array(perm))
    np.testing.assert_allclose(evaluate(parse_expression("rrf(x, y)"), t2, t2.ids), np.asarray(want)[perm])


def test_rrf_of_one_column_orders_like_the_column():
    t = Table({"id": as_column(list("abc"), "str"), "x": np.array([0.2, 0.9, 0.5])})
    got = evaluate(parse_expression("rrf(x)"), t, t.ids)
    assert np.argsort(-got).tolist() == [1, 2, 0]


@pytest.mark.parametrize("sizes, k, want", [
    ([5, 3, 2], 5, [3, 1, 1]),      # exact 2.5, 1.5, 1.0: remainders .5 .5 0 -> first group wins the tie
    ([10, 10, 10], 10, [4, 3, 3]),
    ([1, 1], 5, [1, 1]),            # k larger than the pool
    ([0, 4], 2, [0, 2]),
])
def test_proportional_quotas_largest_remainder(sizes, k, want):
    assert proportional_quotas(sizes, k) == want


@pytest.mark.parametrize("sizes, k, want", [
    ([5, 1, 5], 7, [3, 1, 3]),      # the small group gives its unused share to the others
    ([5, 5, 5], 7, [3, 2, 2]),
    ([2, 2], 10, [2, 2]),
])
def test_equal_quotas_water_filling(sizes, k, want):
    assert equal_quotas(sizes, k) == want


def _pool(tmp_path):
    rows = [{"instruction": f"q{i}", "input": "", "output": "w " * (i + 1), "category": c}
            for i, c in enumerate(["a", "b", "a", "c", "a", "b", "a"])]
    return write_pool(tmp_path / "p.json", rows)


def _selected(tmp_path, body: str) -> list[str]:
    _pool(tmp_path)
    (tmp_path / "s.sel").write_text('p = load(path: "p.json")\nl = length(p)\n' + body + "\nsave(q)\n")
    dslrun_here("s.sel", "-q", "--out", "o", cwd=tmp_path, check=True)
    return [r["instruction"] for r in json.loads((tmp_path / "o" / "selected.json").read_text())]


def test_quota_per_group_takes_the_best_of_each(tmp_path):
    got = _selected(tmp_path, "q = quota(l, group: category, by: output_words, per_group: 2)")
    # a: q0 q2 q4 q6 -> best two q6 q4; b: q1 q5 -> both; c: q3. Pool order out.
    assert got == ["q1", "q3", "q4", "q5", "q6"]


def test_quota_counts_and_others(tmp_path):
    got = _selected(tmp_path, "q = quota(l, group: category, by: output_words, counts: {a: 1}, others: 0, "
                              "order: score)")
    assert got == ["q6"]


def test_quota_k_split_equal(tmp_path):
    got = _selected(tmp_path, "q = quota(l, group: category, k: 3, split: equal)")
    assert got == ["q0", "q1", "q3"]  # one per group, pool order within a group


def test_quota_needs_exactly_one_rule(tmp_path):
    _pool(tmp_path)
    (tmp_path / "s.sel").write_text('p = load(path: "p.json")\nq = quota(p, group: category, k: 3, per_group: 1)\n'
                                    "save(q)\n")
    r = dslrun_here("check", "s.sel", cwd=tmp_path)
    assert r.returncode == 2
    assert "exactly one of" in r.stderr and "s.sel:2:" in r.stderr


def test_union_keeps_each_sample_once_in_input_order(tmp_path):
    got = _selected(tmp_path, "a = rank(l, by: output_words, top: 2)\nb = rank(l, by: output_words, descending: false, "
                              "top: 3)\nc = sample(l, n: 7, seed: 0)\nq = union(a, b, c)")
    assert got[:5] == ["q6", "q5", "q0", "q1", "q2"]
    assert sorted(got) == [f"q{i}" for i in range(7)]
