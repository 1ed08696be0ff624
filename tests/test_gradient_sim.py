"""``gradient-sim`` (LESS) on a tiny GPT-2 built in the test: gradients, Adam features, projection, matching, warm-up reuse."""

from __future__ import annotations

import json

import numpy as np
import pytest

from testkit.cli import alpaca, dslrun, write_pool

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from dslrun.operators.influence import match, project  # noqa: E402
from dslrun.operators.influence.encode import encode_samples  # noqa: E402
from dslrun.operators.influence.grads import batched_gradients, loop_gradients, trainable  # noqa: E402
from dslrun.operators.influence.warmup import WarmupConfig, linear_schedule, lora_model, train  # noqa: E402

CFG = WarmupConfig(r=4, alpha=16, dropout=0.1, target_modules=("c_attn",), epochs=2, lr=1e-3, grad_accum=4)


def conversations(rows):
    return [[{"role": "user", "content": r["instruction"] + ("\n\n" + r["input"] if r["input"] else "")},
             {"role": "assistant", "content": r["output"]}] for r in rows]


def test_tulu_encoding_scores_reply_eos_and_newline_only(lm):
    _, tok = lm
    (e,) = encode_samples(tok, [[{"role": "user", "content": " Name a color. "},
                                 {"role": "assistant", "content": "Blue is a primary color."}]], "tulu", 512)
    assert tok.decode(e.ids) == "<|user|>\nName a color.\n<|assistant|>\nBlue is a primary color.</s>\n"
    scored = tok.decode([t for t, s in zip(e.ids, e.labels) if s])
    assert scored == "Blue is a primary color.</s>\n"


def test_batched_per_sample_gradients_equal_one_backward_per_sample(lm):
    base, tok = lm
    model = lora_model(base, CFG).eval()
    with torch.no_grad():  # LoRA B starts at zero (A's gradient would be zero): make both non-trivial
        for _name, p in trainable(model):
            p.normal_(0, 0.3)
    enc = encode_samples(tok, conversations(alpaca(5)), "tulu", 512)
    assert len({len(e.ids) for e in enc}) > 1  # rows of different lengths: padding is exercised
    batched = batched_gradients(model, enc, tok.pad_token_id)
    loop = loop_gradients(model, enc, tok.pad_token_id)
    assert batched.shape == loop.shape == (5, sum(p.numel() for _, p in trainable(model)))
    assert ((batched - loop).norm(dim=1) / loop.norm(dim=1)).max() < 1e-5
    # and the reference itself is the model's own loss: mean cross-entropy over scored tokens
    e = enc[0]
    labels = torch.tensor([t if s else -100 for t, s in zip(e.ids, e.labels)])[None]
    model.zero_grad()
    model(input_ids=torch.tensor([e.ids]), labels=labels).loss.backward()
    want = torch.cat([p.grad.flatten() for _, p in trainable(model)])
    assert (loop[0] - want).norm() / want.norm() < 1e-5


def test_schedule_is_linear_with_warmup():
    assert [linear_schedule(s, 10, 2) for s in range(11)] == [0, 0.5, 1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8,
                                                              1 / 8, 0]


@pytest.fixture(scope="module")
def warm(lm, tmp_path_factory):
    """The tiny model's LoRA warmed up on 8 samples (2 epochs, one checkpoint each)."""
    base, tok = lm
    enc = encode_samples(tok, conversations(alpaca(8)), "tulu", 512)
    model = lora_model(base, CFG)
    return model, train(model, enc, CFG, tmp_path_factory.mktemp("warm") / "w", tok.pad_token_id), enc


def hand_gradients(model, ckpt, e):
    """One sample's plain gradient and its Adam-preconditioned one, by hand from the checkpoint file."""
    state = torch.load(ckpt.path, weights_only=True)
    model.eval()
    with torch.no_grad():
        for name, p in trainable(model):
            p.copy_(state[name])
    names = [n for n, _ in trainable(model)]
    labels = torch.tensor([t if s else -100 for t, s in zip(e.ids, e.labels)])[None]
    model.zero_grad()
    model(input_ids=torch.tensor([e.ids]), labels=labels).loss.backward()
    g = torch.cat([p.grad.flatten() for _, p in trainable(model)])
    m = torch.cat([state[n + "::exp_avg"].flatten() for n in names])
    v = torch.cat([state[n + "::exp_avg_sq"].flatten() for n in names])
    return g, (0.9 * m + 0.1 * g) / torch.sqrt(0.999 * v + 0.001 * g * g + 1e-8)


def test_adam_features_equal_hand_reference_from_optimizer_state(lm, warm, tmp_path):
    """Warm up, then rebuild one candidate's feature by hand from the checkpoint file."""
    from dslrun.runtime.execution.context import RunContext

    model, ckpts, enc = warm
    assert [c.epoch for c in ckpts] == [1, 2]
    steps = 2 * 2  # 8 samples / 4 per step, 2 epochs; warm-up ceil(0.03 · 4) = 1 step
    lrs = [1e-3 * linear_schedule(s, steps, 1) for s in range(steps)]
    assert [c.avg_lr for c in ckpts] == pytest.approx([np.mean(lrs[:2]), np.mean(lrs[2:])])

    g, pre = hand_gradients(model, ckpts[0], enc[3])
    full_r = torch.cat([project.rademacher_block(7, b, 64) for b in range(len(g) // project.BLOCK_ROWS + 1)])
    want = pre.half().float() @ full_r[:len(g)]
    want = want / want.norm()

    ctx = RunContext(out_dir=tmp_path, spec_dir=tmp_path, cache=None)
    runner = bypassed_runner(ctx, lm, model, ckpts, dim=64, projection_seed=7)
    rows = alpaca(8)
    got = runner.features(conversations(rows)[3:4], "adam", ctx)[0]
    assert got.shape == (2, 64) and got.dtype == np.float16
    assert np.allclose(got[0].astype(np.float32), want.detach().numpy(), atol=2e-3)
    sgd = runner.features(conversations(rows)[3:4], "sgd", ctx)[0]
    plain = g.half().float() @ full_r[:len(g)]
    assert np.allclose(sgd[0].astype(np.float32), (plain / plain.norm()).numpy(), atol=2e-3)


def test_trak_projector_features_are_basic_projectors_with_less_arguments(lm, warm, tmp_path):
    """``projector: trak``: the same gradients through TRAK's BasicProjector as LESS calls it
    (exact equality of the projection itself: tests/fidelity/test_less_projection.py)."""
    pytest.importorskip("trak")
    from trak.projectors import BasicProjector, ProjectionType

    from dslrun.runtime.execution.context import RunContext

    model, ckpts, enc = warm
    ctx = RunContext(out_dir=tmp_path, spec_dir=tmp_path, cache=None)
    runner = bypassed_runner(ctx, lm, model, ckpts, dim=200, projection_seed=7, projector="trak")
    assert runner.projector_key.endswith(":cpu:float32")
    got = runner.features(conversations(alpaca(8))[3:4], "adam", ctx)[0]
    assert got.shape == (2, 200) and got.dtype == np.float32  # TRAK's values, not rounded to float16
    for k, ckpt in enumerate(ckpts):  # one matrix for every checkpoint (LESS: model_id=0)
        pre = hand_gradients(model, ckpt, enc[3])[1]
        less = BasicProjector(grad_dim=len(pre), proj_dim=200, seed=7, proj_type=ProjectionType.rademacher,
                              device="cpu", dtype=torch.float32, block_size=128, max_batch_size=16)
        want = torch.nn.functional.normalize(less.project(pre.half()[None], model_id=0), dim=1)[0]
        assert np.allclose(got[k], want.detach().numpy(), atol=1e-3)


def bypassed_runner(ctx, base_tok, model, ckpts, **params):
    """A Runner handed the model we trained (no model resolution)."""
    from dslrun.operators.gradient_sim import GradientSimParams
    from dslrun.operators.influence.runner import Runner

    runner = Runner.__new__(Runner)
    runner.p = GradientSimParams(target=str(ctx.spec_dir), model="x", r=4, alpha=16, target_modules=["c_attn"],
                                 epochs=2, lr=1e-3, grad_accum=4, **params)
    runner.ctx, runner.cfg, runner._model, runner.checkpoints = ctx, CFG, model, ckpts
    runner._loaded_model, runner._template, runner._loaded = base_tok, None, None
    runner._projector_key = runner._trak = None
    return runner


def test_projection_is_seeded_reproducible_and_block_independent():
    x = torch.randn(3, project.BLOCK_ROWS + 500)
    a, b = project.project(x, 96, seed=5), project.project(x, 96, seed=5)
    assert torch.equal(a, b)
    assert not torch.allclose(a, project.project(x, 96, seed=6))
    full_r = torch.cat([project.rademacher_block(5, 0, 96), project.rademacher_block(5, 1, 96)])
    assert torch.allclose(a, x @ full_r[:x.shape[1]], rtol=1e-5, atol=1e-3)
    # row i of R does not depend on the vector length, and R has ±1 entries, balanced
    assert torch.allclose(project.project(x[:, :100], 96, 5), x[:, :100] @ full_r[:100], rtol=1e-5, atol=1e-3)
    assert set(full_r.unique().tolist()) == {-1.0, 1.0}
    assert abs(full_r.mean().item()) < 0.01
    ints = torch.tensor([0, 1, 2**31 + 7, 2**32 - 1])
    assert project.fmix32(ints).tolist() == [project.fmix32_int(int(i)) for i in ints]


def test_matching_weights_checkpoints_then_mean_per_subtask_then_max():
    rng = np.random.default_rng(0)
    cand = rng.normal(size=(4, 2, 8))
    targ = rng.normal(size=(5, 2, 8))
    w = match.checkpoint_weights([3e-5, 1e-5])
    assert list(w) == [0.75, 0.25]
    sim = match.influence_matrix(cand, targ, w)
    want = 0.75 * cand[:, 0] @ targ[:, 0].T + 0.25 * cand[:, 1] @ targ[:, 1].T
    assert np.allclose(sim, want, atol=1e-5)
    constructed = np.array([[1.0, 3.0, 0.0, 0.0, 9.0],
                            [5.0, 5.0, 1.0, 1.0, 1.0]])
    score, best = match.subtask_scores(constructed, ["a", "a", "b", "b", "b"])
    assert list(score) == [3.0, 5.0]  # row 0: mean a = 2, mean b = 3 → 3 (b); row 1: 5 (a), 1 (b) → 5
    assert list(best) == [1, 0]


@pytest.mark.slow  # trains models for 20-55 s: the default run stays under 15 min
def test_recipe_step_caches_features_and_never_retrains(tiny, tmp_path):
    import pyarrow.parquet as pq

    write_pool(tmp_path / "p.json", alpaca(24))
    write_pool(tmp_path / "t.json", [dict(r, subtask="ab"[i % 2]) for i, r in enumerate(alpaca(4, start=50))])

    def spec(dim: int) -> None:
        (tmp_path / "s.sel").write_text(
            f'p = load(path: "p.json")\ns = gradient-sim(p, target: "t.json", model: "{tiny}", r: 2, alpha: 8, '
            f'target_modules: ["c_attn"], epochs: 2, dim: {dim}, warmup_fraction: 0.25, grad_accum: 2, lr: 1e-3)\n'
            f'k = rank(s, by: less_score, fraction: 0.25)\nsave(k, path: "o.json")\n')

    env = {"DSLRUN_MODEL_CACHE": str(tmp_path / "m")}
    spec(32)
    first = dslrun(str(tmp_path / "s.sel"), "-q", "--out", ".", cwd=tmp_path, env=env, check=True)
    assert "trained on 6 samples, 2 checkpoints" in first.stdout
    (folder,) = (tmp_path / ".dslrun" / "warmup").iterdir()
    stamp = (folder / "epoch-1.pt").stat().st_mtime_ns
    scores = pq.read_table(tmp_path / "o.scores.parquet").to_pylist()
    assert len(scores) == 6 and all(s["less_score_subtask"] in ("a", "b") for s in scores)
    assert [s["less_score"] for s in scores] == sorted((s["less_score"] for s in scores), reverse=True)

    plan = dslrun("plan", str(tmp_path / "s.sel"), cwd=tmp_path, env=env, check=True).stdout
    assert "28/28" in plan and "to compute: 0 samples" in plan
    again = dslrun(str(tmp_path / "s.sel"), "-q", "--out", ".", cwd=tmp_path, env=env, check=True)
    assert "checkpoints reused" in again.stdout
    row = next(line.split() for line in again.stdout.splitlines() if line.startswith("s "))
    assert row[4:6] == ["28", "0"]  # 24 candidates + 4 targets from the cache
    assert json.loads((tmp_path / "run.json").read_text())["model_loads"] == 0
    assert pq.read_table(tmp_path / "o.scores.parquet").to_pylist() == scores

    spec(48)  # another projection: features recomputed, warm-up reused
    plan = dslrun("plan", str(tmp_path / "s.sel"), cwd=tmp_path, env=env, check=True).stdout
    assert "0/28" in plan and "to compute: 28 samples, 112 model forward passes" in plan  # 2 epochs × fwd+bwd
    third = dslrun(str(tmp_path / "s.sel"), "-q", "--out", ".", cwd=tmp_path, env=env, check=True)
    assert "checkpoints reused" in third.stdout
    row = next(line.split() for line in third.stdout.splitlines() if line.startswith("s "))
    assert row[4:6] == ["0", "28"]
    assert (folder / "epoch-1.pt").stat().st_mtime_ns == stamp


@pytest.mark.slow  # trains models for 20-55 s: the default run stays under 15 min
def test_the_projector_keys_the_features_and_the_default_keeps_its_entries(tiny, tmp_path):
    """``projector: trak`` computes its own features (warm-up reused); the default's cached
    entries stay valid (the key of features cached before the option existed did not move)."""
    pytest.importorskip("trak")
    write_pool(tmp_path / "p.json", alpaca(8))
    write_pool(tmp_path / "t.json", alpaca(2, start=50))

    def spec(extra: str) -> str:
        (tmp_path / "s.sel").write_text(
            f'p = load(path: "p.json")\ns = gradient-sim(p, target: "t.json", model: "{tiny}", r: 2, alpha: 8, '
            f'target_modules: ["c_attn"], epochs: 1, dim: 32, warmup_fraction: 0.5, grad_accum: 2{extra})\n'
            f'save(s, path: "o.json")\n')
        return str(tmp_path / "s.sel")

    env = {"DSLRUN_MODEL_CACHE": str(tmp_path / "m")}
    dslrun(spec(""), "-q", "--out", ".", cwd=tmp_path, env=env, check=True)
    trak = dslrun(spec(", projector: trak"), "-q", "--out", ".", cwd=tmp_path, env=env, check=True).stdout
    assert "checkpoints reused" in trak
    assert next(line.split() for line in trak.splitlines() if line.startswith("s "))[4:6] == ["0", "10"]
    for extra in ("", ", projector: trak"):
        assert "10/10" in dslrun("plan", spec(extra), cwd=tmp_path, env=env, check=True).stdout

    from dslrun.core.keys import cache_params
    from dslrun.operators.gradient_sim import FeatureParams, GradFeatures

    base = dict(warmup="w", kind="adam", dim=32, projection_seed=0, template="tulu", max_length=64, dtype="auto")
    assert "projector" not in cache_params(GradFeatures(FeatureParams(**base), None, "m"))
    assert cache_params(GradFeatures(FeatureParams(**base, projector="trak-0.3.2:cpu:float32"), None, "m"))[
        "projector"] == "trak-0.3.2:cpu:float32"
