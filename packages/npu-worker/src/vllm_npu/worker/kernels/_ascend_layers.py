"""Ascend layer kernels (RMSNorm, add + RMSNorm, SwiGLU, neox rotary embedding): the
reference ops' contract (``_reference_layers``) on torch_npu's fused ops.

torch_npu is imported inside each op, so this module imports on a host without it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rms_norm(x: Tensor, weight: Tensor, epsilon: float) -> Tensor:
    """x / sqrt(mean(x^2) + eps) * weight over the last dim."""
    import torch_npu

    output, _ = torch_npu.npu_rms_norm(x, weight, epsilon)
    return output


def fused_add_rms_norm(
    x: Tensor, residual: Tensor, weight: Tensor, epsilon: float
) -> tuple[Tensor, Tensor]:
    """(rms_norm(x + residual), x + residual), as vLLM's RMSNorm with a residual returns."""
    import torch_npu

    output, _, summed = torch_npu.npu_add_rms_norm(x, residual, weight, epsilon)
    return output, summed


def silu_and_mul(x: Tensor) -> Tensor:
    """silu(x[..., :d]) * x[..., d:] with d = x.shape[-1] // 2."""
    import torch_npu

    return torch_npu.npu_swiglu(x, dim=-1)


def _neox_factors(
    positions: Tensor, cos_sin_cache: Tensor, rotary_dim: int
) -> tuple[Tensor, Tensor]:
    """cos and sin per token as [1, num_tokens, 1, rotary_dim], both halves repeated.

    vLLM's cache row holds cos then sin for the rotary_dim // 2 frequencies.
    """
    cos, sin = cos_sin_cache.index_select(0, positions).chunk(2, dim=-1)
    shape = (1, positions.shape[0], 1, rotary_dim)
    return torch.cat((cos, cos), dim=-1).view(shape), torch.cat((sin, sin), dim=-1).view(shape)


def _rotate_heads(x: Tensor, cos: Tensor, sin: Tensor, head_size: int) -> Tensor:
    """Rotate the first rotary_dim channels of each head of x [num_tokens, heads * head_size]."""
    import torch_npu

    rotary_dim = cos.shape[-1]
    heads = x.view(1, cos.shape[1], -1, head_size)
    if rotary_dim == head_size:
        rotated = torch_npu.npu_rotary_mul(heads, cos, sin)
    else:
        turned = torch_npu.npu_rotary_mul(heads[..., :rotary_dim], cos, sin)
        rotated = torch.cat((turned, heads[..., rotary_dim:]), dim=-1)
    return rotated.view(x.shape)


def rotary_embedding_neox(
    positions: Tensor,
    query: Tensor,
    key: Tensor | None,
    cos_sin_cache: Tensor,
    head_size: int,
    rotary_dim: int,
) -> tuple[Tensor, Tensor | None]:
    """Neox-style rotary embedding of query and key, as vLLM's RotaryEmbedding computes it.

    query and key are [num_tokens, num_heads * head_size] (or any shape with that many
    elements per token); cos_sin_cache is [max_position, rotary_dim] in query's dtype.
    """
    positions = positions.flatten()
    cos, sin = _neox_factors(positions, cos_sin_cache, rotary_dim)
    rotated_query = _rotate_heads(query, cos, sin, head_size)
    rotated_key = None if key is None else _rotate_heads(key, cos, sin, head_size)
    return rotated_query, rotated_key


class AscendLayerKernels:
    """The torch_npu layer ops as a kernel set (see ``vllm_npu.worker.kernels``)."""

    name = "ascend"
    rms_norm = staticmethod(rms_norm)
    fused_add_rms_norm = staticmethod(fused_add_rms_norm)
    silu_and_mul = staticmethod(silu_and_mul)
    rotary_embedding_neox = staticmethod(rotary_embedding_neox)


ASCEND_LAYER_KERNELS = AscendLayerKernels()
