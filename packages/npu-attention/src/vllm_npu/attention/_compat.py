"""Differences between the vLLM releases we support, detected by feature."""

from __future__ import annotations

from typing import Any

import torch
from vllm.v1.attention.backend import AttentionBackend


class _ShapeFromVllm:
    """vLLM computes the KV cache shape itself (0.29 onwards), in a physical layout
    it lets the backends choose."""

    @classmethod
    def supported_kv_cache_layouts(cls) -> tuple[Any, ...] | None:
        """Layer-compact, identity order (each layer's ``[blocks, heads, block, K|V]``
        one contiguous piece) when the kernels reinterpret the memory in a layout of
        their own; any layout otherwise."""
        from vllm.v1.kv_cache_layout import KVCacheLayout

        from vllm_npu.attention.backend import kernels_for_current_device

        kernels = kernels_for_current_device()
        if kernels.kv_cache_shape(1, kernels.block_size or 16, 1, 1) is None:
            return None
        return (KVCacheLayout.LBHNC,)


class _ShapeFromBackend:
    """vLLM asks the backend for the KV cache shape (0.28)."""

    @staticmethod
    def get_kv_cache_shape(
        num_blocks: int,
        block_size: int,
        num_kv_heads: int,
        head_size: int,
        cache_dtype_str: str = "auto",
    ) -> tuple[int, ...]:
        """The current kernel set's layout, else K and V side by side in the last dim
        (as vLLM lays them out itself from 0.29 on)."""
        from vllm_npu.attention.backend import kernels_for_current_device

        shape = kernels_for_current_device().kv_cache_shape(
            num_blocks, block_size, num_kv_heads, head_size
        )
        return shape or (num_blocks, num_kv_heads, block_size, 2 * head_size)


KVCacheShape: type = (
    _ShapeFromBackend
    if hasattr(AttentionBackend, "get_kv_cache_shape")
    else _ShapeFromVllm
)
"""Mixin for our backends: ``get_kv_cache_shape`` where this vLLM asks for it."""


def host_seq_lens(common: Any) -> torch.Tensor:
    """The batch's sequence lengths on the host, from vLLM's CPU copies.

    vLLM 0.32 keeps ``seq_lens_cpu_upper_bound`` (exact unless speculative decoding
    runs asynchronously, which this plugin does not enable); earlier releases a
    ``_seq_lens_cpu`` field (their ``seq_lens_cpu`` property copies the device tensor
    when that is None). Without either, ``_num_computed_tokens_cpu`` plus the query
    lengths; only then is the device tensor read, once per step.
    """
    for name in ("seq_lens_cpu_upper_bound", "_seq_lens_cpu"):
        value = getattr(common, name, None)
        if value is not None:
            return value[: common.num_reqs]
    computed = getattr(common, "_num_computed_tokens_cpu", None)
    query_start_loc = common.query_start_loc_cpu[: common.num_reqs + 1]
    if computed is not None:
        return computed[: common.num_reqs] + (query_start_loc[1:] - query_start_loc[:-1])
    return common.seq_lens[: common.num_reqs].cpu()
