"""Attention backend of the vllm-npu platform and the kernels behind it."""

from vllm_npu.attention.backend import (
    NPUAttentionBackend,
    NPUAttentionImpl,
    NPUAttentionMetadata,
    NPUAttentionMetadataBuilder,
)

__all__ = [
    "NPUAttentionBackend",
    "NPUAttentionImpl",
    "NPUAttentionMetadata",
    "NPUAttentionMetadataBuilder",
]
