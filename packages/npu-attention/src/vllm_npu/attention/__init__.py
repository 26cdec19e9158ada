"""Attention backend of the vllm-npu platform and the kernels behind it.

The backend classes are imported on first use: they pull in vLLM's attention stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("vllm_npu.attention.backend"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
