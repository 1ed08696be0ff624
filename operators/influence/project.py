"""Seeded Rademacher random projection of long gradient vectors, block by block.

LESS projects with TRAK's ``BasicProjector``/``CudaProjector`` (``ProjectionType.rademacher``,
seed 0): ``x ↦ x R`` with ``R`` a (P × dim) matrix of ±1 entries, generated on the fly in
blocks because it never fits in memory (P is millions of LoRA weights).

Here ``R`` is cut into blocks of ``BLOCK_ROWS`` rows; block ``b`` is drawn as 32-bit words
from a CPU generator seeded by a hash of (seed, b), and each word gives 32 signs through a
byte → 8 signs lookup table (one gather per block; the words are 32× smaller than the
block, so moving them to a GPU is cheap). ``R`` therefore depends only on (seed, P, dim):
not on the device or the batch, and row ``i`` is the same whatever P is. The scale of
``R`` does not matter: features are L2-normalised after projection. Inner products are
preserved as well as by TRAK's matrix (both Rademacher), but the features are not LESS's:
``projector: trak`` (``trak_projection.py``) calls TRAK itself for those.
"""

from __future__ import annotations

from typing import Any

M32 = 0xFFFFFFFF
BLOCK_ROWS = 4096


def fmix32(x: Any) -> Any:
    """MurmurHash3's 32-bit finaliser on an int64 tensor of values < 2**32 (low 32 bits kept)."""
    x = x ^ (x >> 16)
    x = (x * 0x85EBCA6B) & M32  # int64 products wrap modulo 2**64; the low 32 bits are exact
    x = x ^ (x >> 13)
    x = (x * 0xC2B2AE35) & M32
    return x ^ (x >> 16)


def fmix32_int(x: int) -> int:
    """The same hash on a Python int (tests check the tensor version against it)."""
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & M32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & M32
    return x ^ (x >> 16)


def block_words(seed: int, block: int, n_words: int) -> Any:
    """(BLOCK_ROWS × n_words) random 32-bit words of one block, as int32, from a CPU generator
    seeded by a hash of (seed, block): the same on every machine and device."""
    import torch

    key = fmix32_int((fmix32_int(seed & M32) ^ fmix32_int((seed >> 32) & M32) ^ block) & M32)
    gen = torch.Generator(device="cpu").manual_seed(fmix32_int(key ^ 0x9E3779B9) << 32 | key)
    return torch.randint(-2**31, 2**31, (BLOCK_ROWS, n_words), dtype=torch.int32, generator=gen)


_TABLES: dict[tuple[str, str], Any] = {}


def _sign_table(device: Any, dtype: Any) -> Any:
    """256 × 8: the ±1 value of each bit of a byte, least significant bit first."""
    import torch

    key = (str(device), str(dtype))
    if key not in _TABLES:
        bits = (torch.arange(256)[:, None] >> torch.arange(8)[None, :]) & 1
        _TABLES[key] = (bits * 2 - 1).to(device=device, dtype=dtype)
    return _TABLES[key]


def rademacher_block(seed: int, block: int, dim: int, device: Any = "cpu") -> Any:
    """Rows ``block * BLOCK_ROWS ..`` (BLOCK_ROWS of them) of the (P × dim) ±1 matrix, float32."""
    import torch

    n_words = (dim + 31) // 32
    nbytes = block_words(seed, block, n_words).to(device).view(torch.uint8).reshape(-1).long()
    signs = torch.index_select(_sign_table(device, torch.float32), 0, nbytes)  # (rows·bytes) × 8
    return signs.reshape(BLOCK_ROWS, n_words * 32)[:, :dim]


def project(x: Any, dim: int, seed: int) -> Any:
    """``x @ R`` for ``x`` of shape (B × P), in float32, one block of R at a time."""
    import torch

    x = x.float()
    out = torch.zeros(x.shape[0], dim, dtype=torch.float32, device=x.device)
    for block, r0 in enumerate(range(0, x.shape[1], BLOCK_ROWS)):
        n = min(BLOCK_ROWS, x.shape[1] - r0)
        out.addmm_(x[:, r0:r0 + n], rademacher_block(seed, block, dim, x.device)[:n])
    return out


def features(x: Any, dim: int, seed: int) -> Any:
    """LESS's feature: cast to float16, project, L2-normalise (rows of zeros stay zero)."""
    import torch

    projected = project(x.to(torch.float16), dim, seed)
    return torch.nn.functional.normalize(projected, dim=1)
