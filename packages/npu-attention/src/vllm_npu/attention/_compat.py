"""Differences between the vLLM releases we support, detected by feature."""

from __future__ import annotations

from vllm.v1.attention.backend import AttentionBackend


class _ShapeFromVllm:
    """vLLM computes the KV cache shape itself (0.29 onwards)."""


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
        """K and V side by side in the last dim, as vLLM lays them out from 0.29 on."""
        return (num_blocks, num_kv_heads, block_size, 2 * head_size)


KVCacheShape: type = (
    _ShapeFromBackend
    if hasattr(AttentionBackend, "get_kv_cache_shape")
    else _ShapeFromVllm
)
"""Mixin for our backends: ``get_kv_cache_shape`` where this vLLM asks for it."""
