"""Reference layer kernels in portable PyTorch: RMSNorm, add + RMSNorm, SwiGLU and the
neox-style rotary embedding, with vLLM's layer semantics (``RMSNorm``,
``SiluAndMul``, ``RotaryEmbedding``: float32 inside the norm, the input's dtype out).

They are the contract every layer kernel set keeps and the ground truth of the kernel
tests, and the host backend's layers where they compute bit for bit what vLLM's own
native code does, in fewer ops (RMSNorm in float32, neox rotary embedding: see
``custom_ops``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rms_norm(x: Tensor, weight: Tensor, epsilon: float) -> Tensor:
    """x / sqrt(mean(x^2) + eps) * weight over the last dim."""
    if x.dtype == torch.float32 and weight.dtype == torch.float32:
        # PyTorch's op: the same float32 arithmetic as below, in one call.
        return F.rms_norm(x, (x.shape[-1],), weight, epsilon)
    x32 = x.float()
    normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + epsilon)
    return normed.to(x.dtype) * weight


def fused_add_rms_norm(
    x: Tensor, residual: Tensor, weight: Tensor, epsilon: float
) -> tuple[Tensor, Tensor]:
    """(rms_norm(x + residual), x + residual), as vLLM's RMSNorm with a residual returns."""
    summed = (x.float() + residual.float()).to(x.dtype)
    return rms_norm(summed, weight, epsilon), summed


def silu_and_mul(x: Tensor) -> Tensor:
    """silu(x[..., :d]) * x[..., d:] with d = x.shape[-1] // 2."""
    gate, up = x.chunk(2, dim=-1)
    return F.silu(gate) * up


def rotary_embedding_neox(
    positions: Tensor,
    query: Tensor,
    key: Tensor | None,
    cos_sin_cache: Tensor,
    head_size: int,
    rotary_dim: int,
) -> tuple[Tensor, Tensor | None]:
    """Neox-style rotary embedding of the first ``rotary_dim`` channels of each head.

    query and key are [num_tokens, num_heads * head_size] (or any shape with that many
    elements per token); cos_sin_cache is [max_position, rotary_dim] (cos then sin of
    the rotary_dim // 2 frequencies) in query's dtype.

    With halves ``x1, x2`` of the rotated channels: ``(x1 cos - x2 sin, x2 cos + x1 sin)``,
    computed as ``x * (cos, cos) + (x2, x1) * (-sin, sin)``: the same products and sums,
    so the same bits as vLLM's native code, in half the ops: the factors of every
    position are laid out that way once per cache (``_neox_factors``).
    """
    positions = positions.flatten()
    num_tokens = positions.shape[0]
    factors = _neox_factors(cos_sin_cache).index_select(0, positions)
    cos, sin = factors[:, None, 0], factors[:, None, 1]

    def apply(x: Tensor) -> Tensor:
        heads = x.reshape(num_tokens, -1, head_size)
        rotated = heads[..., :rotary_dim]
        turned = (rotated * cos).add_(torch.roll(rotated, rotary_dim // 2, dims=-1) * sin)
        if rotary_dim < head_size:
            turned = torch.cat((turned, heads[..., rotary_dim:]), dim=-1)
        return turned.reshape(x.shape)

    return apply(query), None if key is None else apply(key)


_FACTORS: dict[int, tuple[Tensor, int, Tensor]] = {}
"""Per cos/sin cache (by id; the entry keeps it alive and names its version): its
factors as ``_neox_factors`` returns them."""
_MAX_FACTORS = 8


def _neox_factors(cos_sin_cache: Tensor) -> Tensor:
    """``[max_position, 2, rotary_dim]``: ``(cos, cos)`` and ``(-sin, sin)`` of each
    position, computed once per cache (and again if it is written to)."""
    cached = _FACTORS.get(id(cos_sin_cache))
    if (
        cached is not None
        and cached[0] is cos_sin_cache
        and cached[1] == cos_sin_cache._version
    ):
        return cached[2]
    cos, sin = cos_sin_cache.chunk(2, dim=-1)
    factors = torch.stack((torch.cat((cos, cos), -1), torch.cat((-sin, sin), -1)), dim=1)
    if len(_FACTORS) >= _MAX_FACTORS:
        _FACTORS.pop(next(iter(_FACTORS)))
    _FACTORS[id(cos_sin_cache)] = (cos_sin_cache, cos_sin_cache._version, factors)
    return factors


class ReferenceLayerKernels:
    """The portable layer ops as a kernel set (see ``vllm_npu.worker.kernels``)."""

    name = "reference"
    rms_norm = staticmethod(rms_norm)
    fused_add_rms_norm = staticmethod(fused_add_rms_norm)
    silu_and_mul = staticmethod(silu_and_mul)
    rotary_embedding_neox = staticmethod(rotary_embedding_neox)


REFERENCE_LAYER_KERNELS = ReferenceLayerKernels()
