"""PyTorch replacements for vLLM's Triton kernels, for devices without Triton."""

from __future__ import annotations

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
    including context-parallel sharding, and pads the tail with ``PAD_ID``.
    """
    num_reqs = query_start_loc_ptr.numel() - 1
    query_start_loc = query_start_loc_ptr.to(torch.int64)
    token_counts = query_start_loc[1:] - query_start_loc[:-1]
    total = int(query_start_loc[-1]) if num_reqs > 0 else 0
    req_of_token = torch.repeat_interleave(
        torch.arange(num_reqs, device=positions_ptr.device), token_counts
    )
    positions = positions_ptr[:total].to(torch.int64)

    virtual_block_size = KV_CACHE_BLOCK_SIZE * TOTAL_CP_WORLD_SIZE
    virtual_block_index = positions // virtual_block_size
    virtual_offset = positions % virtual_block_size
    flat_block_table = block_table_ptr.reshape(-1)
    block_numbers = flat_block_table[
        req_of_token * block_table_stride + virtual_block_index
    ].to(torch.int64)
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
        slots = torch.where(is_local, slots, torch.full_like(slots, PAD_ID))
    slot_mapping_ptr[:total] = slots.to(slot_mapping_ptr.dtype)
    slot_mapping_ptr[num_tokens:max_num_tokens] = PAD_ID
