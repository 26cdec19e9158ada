"""The attention kernels' dispatch layer: named kernel sets behind one protocol.

The attention backend asks for a set by name (``get_kernels``) and calls its ops;
``_reference`` holds the contract and the portable PyTorch set ("reference").
A device set (such as "ascend") is one module beside it, registered below with one
``register_kernels`` call; that module must import without its device library
(import torch_npu inside the ops) so that registering it costs nothing on a host.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from vllm_npu.attention.kernels._ascend import ASCEND_KERNELS
from vllm_npu.attention.kernels._lengths import HostLengths
from vllm_npu.attention.kernels._reference import REFERENCE_KERNELS
from vllm_npu.platform.kernel_sets import KernelSets


@runtime_checkable
class AttentionKernels(Protocol):
    """One set of attention ops; the semantics are those of ``_reference``."""

    name: str
    block_size: int | None
    """The KV block size the ops require, or None for any."""
    dtypes: tuple[torch.dtype, ...]
    """Model (and KV cache) dtypes the ops accept."""

    def kv_cache_shape(
        self, num_blocks: int, block_size: int, num_kv_heads: int, head_size: int
    ) -> tuple[int, ...] | None:
        """Shape of the per-layer KV cache the ops read and write: None for vLLM's own
        view ``[num_blocks, num_kv_heads, block_size, 2 * head_size]``, else a 5-D
        ``(2, num_blocks, ...)`` (K then V, then blocks; the backend zeroes blocks
        along dim 1)."""
        ...

    def unsupported(
        self,
        *,
        sliding_window: int | None,
        logits_soft_cap: float | None,
        head_size: int | None = None,
        num_heads: int | None = None,
        num_kv_heads: int | None = None,
    ) -> list[str]:
        """The features of a layer with these settings that the ops cannot run (head
        sizes and head counts per rank among them), named for an error message; empty
        when they can run it."""
        ...

    def write_kv_cache(
        self, key: Tensor, value: Tensor, kv_cache: Tensor, slot_mapping: Tensor
    ) -> None: ...

    def paged_attention(
        self,
        query: Tensor,
        kv_cache: Tensor,
        block_table: Tensor,
        query_start_loc: Tensor,
        seq_lens: Tensor,
        *,
        scale: float,
        output: Tensor,
        sliding_window: int | None = None,
        logits_soft_cap: float | None = None,
        max_query_len: int | None = None,
        max_seq_len: int | None = None,
        host_lengths: HostLengths | None = None,
    ) -> Tensor:
        """``host_lengths``: the same lengths on the host, built once per step; a device
        set may require it so that no layer reads device data back."""
        ...


_KERNEL_SETS: KernelSets[AttentionKernels] = KernelSets(
    "attention", AttentionKernels, "vllm_npu.attention.kernels.AttentionKernels"
)


def register_kernels(name: str, kernels: AttentionKernels) -> None:
    """Make ``kernels`` available as ``name``; a name cannot be taken twice."""
    _KERNEL_SETS.register(name, kernels)


def get_kernels(name: str) -> AttentionKernels:
    """The kernel set registered as ``name``."""
    return _KERNEL_SETS.get(name)


def available_kernels() -> tuple[str, ...]:
    """Names of the registered kernel sets, sorted."""
    return _KERNEL_SETS.names()


register_kernels("reference", REFERENCE_KERNELS)
register_kernels("ascend", ASCEND_KERNELS)

__all__ = [
    "AttentionKernels",
    "HostLengths",
    "available_kernels",
    "get_kernels",
    "register_kernels",
]
