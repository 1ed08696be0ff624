"""``diverse-sample`` as a spec step: columns in, the kernels' choice out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dslrun.operators.selection import deita_filter_plain, kcenter_greedy, tag_coverage
from testkit.cli import dslrun_here, write_pool


def pool(n: int = 40, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(8, 6))
    rows = []
    for i in range(n):
        vec = base[i % 8] + 0.05 * rng.normal(size=6)  # 8 clusters of near-duplicates
        rows.append({"instruction": f"q{i}", "input": "", "output": f"answer {i}", "quality": float(rng.random()),
                     "vec": vec.round(6).tolist(), "labels": [f"t{j}" for j in range(i % 5)]})
    return rows


def run(tmp_path, body: str) -> list[dict]:
    records = pool()
    write_pool(tmp_path / "p.json", records)
    (tmp_path / "s.sel").write_text('p = load(path: "p.json")\n' + body + "\nsave(d, path: \"o.json\")\n")
    dslrun_here(str(tmp_path / "s.sel"), "-q", "--out", ".", cwd=tmp_path, check=True)
    return json.loads((tmp_path / "o.json").read_text())


def test_deita_step_matches_the_reference_loop(tmp_path):
    got = run(tmp_path, 'd = diverse-sample(p, method: deita, k: 6, by: quality, embedding: "vec", threshold: 0.9)')
    records = pool()
    vecs = np.array([r["vec"] for r in records], dtype=np.float32)
    want = deita_filter_plain(vecs, np.array([r["quality"] for r in records]), 6, 0.9)
    assert [r["instruction"] for r in got] == [records[i]["instruction"] for i in want]
    assert len(got) == 6  # one per cluster until k: near-duplicates were dropped


def test_kcenter_and_tag_coverage_steps(tmp_path):
    records = pool()
    vecs = np.array([r["vec"] for r in records], dtype=np.float32)
    got = run(tmp_path, 'd = diverse-sample(p, method: kcenter, k: 5, embedding: "vec", seed: 3, order: original)')
    assert [r["instruction"] for r in got] == [records[i]["instruction"] for i in sorted(kcenter_greedy(vecs, 5, seed=3))]
    got = run(tmp_path, 'd = diverse-sample(p, method: tag-coverage, k: 7, tags: "labels")')
    assert [r["instruction"] for r in got] == [records[i]["instruction"] for i in tag_coverage([r["labels"] for r in records], 7)]


def test_deita_without_a_score_is_a_spec_error(tmp_path):
    write_pool(tmp_path / "p.json", pool())
    (tmp_path / "s.sel").write_text('p = load(path: "p.json")\nd = diverse-sample(p, method: deita, k: 3, embedding: "vec")\n')
    r = dslrun_here("check", str(tmp_path / "s.sel"), cwd=tmp_path)
    assert r.returncode == 2 and "method deita needs `by`" in r.stderr
    (tmp_path / "s.sel").write_text('p = load(path: "p.json")\nd = diverse-sample(p, method: kcenter, k: 3, embedding: "vex")\n')
    r = dslrun_here("check", str(tmp_path / "s.sel"), cwd=tmp_path)
    assert r.returncode == 2 and "unknown column `vex`" in r.stderr and "did you mean `vec`?" in r.stderr


@pytest.mark.parametrize("candidates, k, want", [
    # the given centre (10) is a candidate too: it is never chosen again
    ("filter(p, where: len(output) > 0)", 2, ["p0", "p2"]),
    # not a candidate: it still counts as a centre, so 11 (next to it) comes last
    ("filter(p, where: instruction != 'p10')", 3, ["p0", "p2", "p1"]),
])
def test_kcenter_given_centres(candidates, k, want, tmp_path):
    # 1-D points as 2-D vectors: 0, 1, 2, 10, 11. Given centre: the point at 10. Farthest from 10
    # is 0; then the farthest from {10, 0} is 2 (distance 2, against 1 for the points 1 and 11).
    rows = [{"instruction": f"p{x}", "input": "", "output": "o", "vec": [float(x), 0.0]} for x in (0, 1, 2, 10, 11)]
    write_pool(tmp_path / "p.json", rows)
    (tmp_path / "s.sel").write_text(
        'p = load(path: "p.json")\n'
        "g = filter(p, where: instruction == 'p10')\n"
        f"c = {candidates}\n"
        f"k = diverse-sample(c, method: kcenter, k: {k}, embedding: vec, given: g)\n"
        "save(k)\n")
    dslrun_here("s.sel", "-q", "--out", "o", cwd=tmp_path, check=True)
    got = [r["instruction"] for r in json.loads((tmp_path / "o" / "selected.json").read_text())]
    assert got == want
