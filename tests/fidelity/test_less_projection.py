"""LESS's projection (princeton-nlp/LESS ``data_selection/collect_grad_reps.py``): ``projector:
trak`` gives exactly what TRAK's ``BasicProjector`` gives with LESS's arguments (seed,
Rademacher, the model's device and dtype, block size 128, ``model_id=0``), the gradients cast
to float16, each row L2-normalised on the CPU (``merge_and_normalize_info``)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trak")

from trak.projectors import BasicProjector, ProjectionType  # noqa: E402

from dslrun.operators.influence.trak_projection import TrakProjector, trak_key  # noqa: E402


def less_features(grads, dim: int, seed: int = 0, dtype=torch.float32):
    """What LESS writes: one projector per run, gradients stacked and cast to float16, normalised."""
    proj = BasicProjector(grad_dim=grads.shape[1], proj_dim=dim, seed=seed, proj_type=ProjectionType.rademacher,
                          device=grads.device, dtype=dtype, block_size=128, max_batch_size=16)
    return torch.nn.functional.normalize(proj.project(grads.to(torch.float16), model_id=0).cpu(), dim=1)


@pytest.mark.parametrize("dim", [300, 100])  # three blocks (the last one short), and a single block
def test_trak_projector_equals_basic_projector_with_less_arguments(dim):
    gen = torch.Generator().manual_seed(0)
    grads = torch.randn(6, 5000, generator=gen) * torch.rand(5000, generator=gen) ** 4  # heavy-tailed, like gradients
    ours = TrakProjector(dim, seed=0, dtype=torch.float32)
    got = ours(grads)
    assert got.dtype == torch.float32 and got.shape == (6, dim)
    assert torch.equal(got, less_features(grads, dim))
    assert torch.equal(ours(grads[:2]), less_features(grads[:2], dim))  # the kept projector, called again
    assert torch.equal(ours(grads[:, :4000]), less_features(grads[:, :4000], dim))  # another gradient length
    assert not torch.allclose(TrakProjector(dim, seed=1, dtype=torch.float32)(grads), got)


def test_bfloat16_as_less_runs_on_a_gpu():
    grads = torch.randn(3, 700, generator=torch.Generator().manual_seed(1))
    got = TrakProjector(256, seed=0, dtype=torch.bfloat16)(grads)
    assert got.dtype == torch.float32  # stored exactly: every bfloat16 is a float32
    assert torch.equal(got, less_features(grads, 256, dtype=torch.bfloat16).float())


def test_the_key_names_version_device_kind_and_dtype():
    from importlib import metadata

    version = metadata.version("traker")
    assert trak_key("cuda:1", "bfloat16") == f"trak-{version}:cuda:bfloat16"
    assert trak_key("cpu", "float32") == f"trak-{version}:cpu:float32"
