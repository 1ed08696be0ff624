"""``projector: trak``: TRAK's ``BasicProjector`` called as LESS calls it, so a feature equals
the one LESS writes for the same gradient.

LESS (``less/data_selection/collect_grad_reps.py``, ``collect_grads``) builds
``BasicProjector(grad_dim, proj_dim, seed=0, proj_type=ProjectionType.rademacher,
device=<the model's>, dtype=<the model's>, block_size=128, max_batch_size=16)`` (TRAK's
``CudaProjector`` instead where its ``fast_jl`` CUDA kernel is installed: another matrix),
projects the gradients stacked and cast to float16 with ``model_id=0`` for every
checkpoint, moves them to the CPU and L2-normalises each row (``merge_and_normalize_info``).
So does this module, with ``projection_seed`` as the seed. The matrix depends on the device
(a CPU and a CUDA generator draw different signs) and the values on the dtype, so both enter
the features' cache key, with traker's version.
"""

from __future__ import annotations

from typing import Any

LESS_BLOCK_SIZE = 128  # collect_grads: "fixed block size for the projectors"
LESS_MAX_BATCH = 16  # collect_grads' projector_batch_size (BasicProjector ignores it)
INSTALL_HINT = "projector: trak needs TRAK's package: pip install 'dslrun[less]' (traker)"


def trak_key(device: str, dtype: str) -> str:
    """The projector's part of the cache key: traker's version, the device kind, the dtype."""
    from importlib import metadata

    try:
        version = metadata.version("traker")
    except metadata.PackageNotFoundError:
        raise RuntimeError(INSTALL_HINT) from None
    return f"trak-{version}:{device.split(':')[0]}:{dtype}"


class TrakProjector:
    """LESS's projector for gradients of one length on one device, kept across calls (its
    constructor draws the first block); the (P × 128) block is freed after every call."""

    def __init__(self, dim: int, seed: int, dtype: Any):
        self.dim, self.seed, self.dtype = dim, seed, dtype
        self._proj: Any = None

    def projector(self, grad_dim: int, device: Any) -> Any:
        try:
            from trak.projectors import BasicProjector, ProjectionType
        except ImportError:
            raise RuntimeError(INSTALL_HINT) from None
        p = self._proj
        if p is None or p.grad_dim != grad_dim or str(p.device) != str(device):
            p = self._proj = BasicProjector(grad_dim=grad_dim, proj_dim=self.dim, seed=self.seed,
                                            proj_type=ProjectionType.rademacher, device=device, dtype=self.dtype,
                                            block_size=LESS_BLOCK_SIZE, max_batch_size=LESS_MAX_BATCH)
        return p

    def __call__(self, grads: Any) -> Any:
        """(B × P) gradients → (B × dim) L2-normalised features, float32 (exact in the projector's dtype)."""
        import torch

        proj = self.projector(grads.shape[1], grads.device)
        out = proj.project(grads.to(torch.float16), model_id=0)
        if proj.num_blocks > 1:  # regenerated block by block on every call; one block is kept and reused
            proj.free_memory()
        return torch.nn.functional.normalize(out.cpu(), dim=1).float()
