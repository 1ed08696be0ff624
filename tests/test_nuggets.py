"""``nuggets`` golden score on a tiny GPT-2 built in the test: KV-reusing batches equal a plain hand computation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from testkit.cli import alpaca, dslrun_here, write_pool

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from dslrun.operators.influence.golden import (  # noqa: E402
    answer_logprobs,
    encode_anchor,
    encode_demo,
    golden_score,
    naive_one_shot,
    promptify,
)


def hand_score(model, tok, prefix: str | None, row: dict) -> float:
    """Unbatched: tokenise, one forward pass, sum log p(answer token | everything before it)."""
    query, full = promptify(row["instruction"], row["input"], row["output"])
    ids = tok(full, add_special_tokens=False)["input_ids"][:200]  # Nuggets' anchors: 200 tokens at most
    start, end = len(tok(query, add_special_tokens=False)["input_ids"]), len(ids)
    head = tok(prefix)["input_ids"] if prefix is not None else []
    with torch.no_grad():
        logp = model(torch.tensor([head + ids])).logits[0].log_softmax(-1)
    return sum(logp[len(head) + t - 1, ids[t]].item() for t in range(start, end))


def test_prompt_is_nuggets_sp_format():
    assert promptify(" Add 2 and 3. ", "", " Five. ") == ("Instruction:\nAdd 2 and 3.\nResponse:\n",
                                                          "Instruction:\nAdd 2 and 3.\nResponse:\nFive.")
    assert promptify("Sum", "2, 3", "5")[0] == "Instruction:\nSum\nInput:\n2, 3\nResponse:\n"


def test_golden_score_equals_unbatched_hand_computation(lm):
    model, tok = lm
    rows = alpaca(9)
    cand = {"instruction": "Name a primary color.", "input": "", "output": "Blue is a primary color."}
    anchors = [encode_anchor(tok, r["instruction"], r["input"], r["output"]) for r in rows]
    demo = encode_demo(tok, cand["instruction"], cand["input"], cand["output"])
    zero = answer_logprobs(model, anchors, tok.pad_token_id, token_budget=300)  # several padded batches
    one = answer_logprobs(model, anchors, tok.pad_token_id, demo, token_budget=300)
    demo_text = promptify(cand["instruction"], cand["input"], cand["output"])[1]
    want_zero = [hand_score(model, tok, None, r) for r in rows]
    want_one = [hand_score(model, tok, demo_text, r) for r in rows]
    assert zero == pytest.approx(want_zero, abs=1e-3)
    assert one == pytest.approx(want_one, abs=1e-3)
    wins = sum(o > z for z, o in zip(want_zero, want_one))
    assert 0 < wins < len(rows)  # the comparison is not trivially all or nothing here
    assert golden_score(zero, one) == wins / len(rows)
    assert naive_one_shot(model, anchors, demo) == pytest.approx(one, abs=1e-3)
    assert golden_score([1.0, 2.0], [1.0, 2.5]) == 0.5  # ties do not count: strictly greater


def test_kmeans_anchors_are_the_samples_nearest_each_centroid():
    from dslrun.operators.nuggets import kmeans_anchors

    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float32)
    pts = np.concatenate([c + rng.normal(0, 0.5, size=(20, 2)) for c in centres]).astype(np.float32)
    got = kmeans_anchors(pts, 3, seed=1)
    # well-separated clusters: k-means' centroids are the cluster means; the anchors are their nearest points
    want = [20 * c + int(((pts[20 * c:20 * c + 20] - pts[20 * c:20 * c + 20].mean(0)) ** 2).sum(1).argmin())
            for c in range(3)]
    assert sorted(got) == sorted(want)
    assert got == kmeans_anchors(pts, 3, seed=1)


def test_nuggets_step_scores_ranks_and_caches(tiny, lm, tmp_path):
    import pyarrow.parquet as pq

    model, tok = lm
    pool, anchors = alpaca(10), alpaca(5, start=40)
    write_pool(tmp_path / "p.json", pool)
    write_pool(tmp_path / "a.json", anchors)
    (tmp_path / "s.sel").write_text(f'p = load(path: "p.json")\ns = nuggets(p, anchors: "a.json", model: "{tiny}")\n'
                                    'k = rank(s, by: golden_score, top: 4)\nsave(k, path: "o.json")\n')
    env = {"DSLRUN_MODEL_CACHE": str(tmp_path / "m")}
    plan = dslrun_here("plan", str(tmp_path / "s.sel"), cwd=tmp_path, env=env, check=True).stdout
    assert "0/10" in plan and "to compute: 10 samples, 65 model forward passes" in plan  # 10 × (1 + 5) + 5 zero-shot
    dslrun_here(str(tmp_path / "s.sel"), "-q", "--out", ".", cwd=tmp_path, env=env, check=True)
    got = pq.read_table(tmp_path / "o.scores.parquet").to_pylist()
    assert len(got) == 4
    zero = [hand_score(model, tok, None, r) for r in anchors]
    for g in got:
        r = pool[g["row"]]
        demo = promptify(r["instruction"], r["input"], r["output"])[1]
        one = [hand_score(model, tok, demo, a) for a in anchors]
        assert g["golden_score"] == golden_score(zero, one)
    again = dslrun_here(str(tmp_path / "s.sel"), "-q", "--out", ".", cwd=tmp_path, env=env, check=True)
    row = next(line.split() for line in again.stdout.splitlines() if line.startswith("s "))
    assert row[4:6] == ["10", "0"]
    assert json.loads((tmp_path / "run.json").read_text())["model_loads"] == 0


def test_a_prompt_longer_than_the_context_is_a_clear_error(lm):
    from dslrun.operators.influence.golden import Anchor

    model, tok = lm
    limit = model.config.n_positions
    anchor = Anchor(ids=[5] * (limit - 10), start=limit - 20, end=limit - 10)
    answer_logprobs(model, [anchor], tok.pad_token_id)  # fits alone
    with pytest.raises(ValueError, match="positions"):
        answer_logprobs(model, [anchor], tok.pad_token_id, demo=[5] * 20)
