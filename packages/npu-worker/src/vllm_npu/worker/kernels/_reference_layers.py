"""Reference layer kernels in portable PyTorch: RMSNorm, add + RMSNorm, SwiGLU and the
neox-style rotary embedding, with vLLM's layer semantics (``RMSNorm``,
``SiluAndMul``, ``RotaryEmbedding``: float32 inside the norm, the input's dtype out).

They are the contract every layer kernel set keeps and the ground truth of the kernel
tests; the host backend's layers run vLLM's own native code, which computes the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rms_norm(x: Tensor, weight: Tensor, epsilon: float) -> Tensor:
    """x / sqrt(mean(x^2) + eps) * weight over the last dim."""
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


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)


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
    """
    positions = positions.flatten()
    cos, sin = cos_sin_cache.index_select(0, positions).chunk(2, dim=-1)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)

    def apply(x: Tensor) -> Tensor:
        heads = x.reshape(positions.shape[0], -1, head_size)
        turned = _rotate(heads[..., :rotary_dim], cos, sin)
        return torch.cat((turned, heads[..., rotary_dim:]), dim=-1).reshape(x.shape)

    return apply(query), None if key is None else apply(key)


class ReferenceLayerKernels:
    """The portable layer ops as a kernel set (see ``vllm_npu.worker.kernels``)."""

    name = "reference"
    rms_norm = staticmethod(rms_norm)
    fused_add_rms_norm = staticmethod(fused_add_rms_norm)
    silu_and_mul = staticmethod(silu_and_mul)
    rotary_embedding_neox = staticmethod(rotary_embedding_neox)


REFERENCE_LAYER_KERNELS = ReferenceLayerKernels()
