"""PyTorch replacements for vLLM's Triton kernels, for devices without Triton."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def compute_slot_mapping(
    num_tokens: int,
    max_num_tokens: int,
    query_start_loc_ptr: torch.Tensor,
    positions_ptr: torch.Tensor,
    block_table_ptr: torch.Tensor,
    block_table_stride: int,
    slot_mapping_ptr: torch.Tensor,
    KV_CACHE_BLOCK_SIZE: int,  # noqa: N803 - the Triton kernel's argument names
    TOTAL_CP_WORLD_SIZE: int = 1,  # noqa: N803
    TOTAL_CP_RANK: int = 0,  # noqa: N803
    CP_KV_CACHE_INTERLEAVE_SIZE: int = 1,  # noqa: N803
    PAD_ID: int = -1,  # noqa: N803
    BLOCK_SIZE: int = 1024,  # noqa: N803
) -> None:
    """Slot of every scheduled token: block_table[req, pos // bs] * bs + pos % bs.

    Mirrors ``vllm.v1.worker.block_table.ComputeSlotMappingKernel.kernel``,
    including context-parallel sharding, and pads the tail with ``PAD_ID``. On host
    tensors it computes in NumPy on their memory: at decode sizes this kernel's time
    is mostly per-op dispatch, which NumPy's costs less of than PyTorch's.
    """
    on_host = _on_host(query_start_loc_ptr, positions_ptr, block_table_ptr, slot_mapping_ptr)

    def as_int64(values: Any) -> Any:
        return values.astype(np.int64) if on_host else values.to(torch.int64)

    query_start_loc = as_int64(query_start_loc_ptr.numpy() if on_host else query_start_loc_ptr)
    num_reqs = query_start_loc.shape[0] - 1
    total = int(query_start_loc[-1]) if num_reqs > 0 else 0
    token_counts = query_start_loc[1:] - query_start_loc[:-1]
    if on_host:
        req_of_token: Any = np.repeat(np.arange(num_reqs), token_counts)
        positions: Any = as_int64(positions_ptr.numpy()[:total])
        flat_block_table: Any = block_table_ptr.numpy().reshape(-1)
        slot_mapping: Any = slot_mapping_ptr.numpy()
    else:
        req_of_token = torch.repeat_interleave(
            torch.arange(num_reqs, device=positions_ptr.device), token_counts
        )
        positions = as_int64(positions_ptr[:total])
        flat_block_table = block_table_ptr.reshape(-1)
        slot_mapping = slot_mapping_ptr

    virtual_block_size = KV_CACHE_BLOCK_SIZE * TOTAL_CP_WORLD_SIZE
    virtual_offset = positions % virtual_block_size
    block_numbers = as_int64(
        flat_block_table[req_of_token * block_table_stride + positions // virtual_block_size]
    )
    if TOTAL_CP_WORLD_SIZE == 1:  # every token's KV is local: no sharding ops per step
        slots = block_numbers * KV_CACHE_BLOCK_SIZE + virtual_offset
    else:
        is_local = (
            virtual_offset // CP_KV_CACHE_INTERLEAVE_SIZE
        ) % TOTAL_CP_WORLD_SIZE == TOTAL_CP_RANK
        local_offset = (
            virtual_offset // (TOTAL_CP_WORLD_SIZE * CP_KV_CACHE_INTERLEAVE_SIZE)
        ) * CP_KV_CACHE_INTERLEAVE_SIZE + virtual_offset % CP_KV_CACHE_INTERLEAVE_SIZE
        slots = block_numbers * KV_CACHE_BLOCK_SIZE + local_offset
        slots = slots * is_local + PAD_ID * ~is_local
    slot_mapping[:total] = slots
    slot_mapping[num_tokens:max_num_tokens] = PAD_ID


def _on_host(*tensors: torch.Tensor) -> bool:
    return all(tensor.device.type == "cpu" for tensor in tensors)
