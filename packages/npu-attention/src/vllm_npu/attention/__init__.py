"""Attention backends of the vllm-npu platform (standard and MLA) and the kernels behind them.

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
    from vllm_npu.attention.mla import NPUMLABackend, NPUMLAImpl, NPUMLAMetadata

__all__ = [
    "NPUAttentionBackend",
    "NPUAttentionImpl",
    "NPUAttentionMetadata",
    "NPUAttentionMetadataBuilder",
    "NPUMLABackend",
    "NPUMLAImpl",
    "NPUMLAMetadata",
]
_MLA_NAMES = ("NPUMLABackend", "NPUMLAImpl", "NPUMLAMetadata")


def __getattr__(name: str) -> Any:
    if name in _MLA_NAMES:
        return getattr(importlib.import_module("vllm_npu.attention.mla"), name)
    if name in __all__:
        return getattr(importlib.import_module("vllm_npu.attention.backend"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
