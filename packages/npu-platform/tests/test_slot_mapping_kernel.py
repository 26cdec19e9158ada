"""Our PyTorch slot-mapping kernel against the Triton kernel's semantics, written naively."""

from __future__ import annotations

import pytest
import torch

from vllm_npu.platform import _kernels
from vllm_npu.platform._kernels import compute_slot_mapping


def naive_slot_mapping(query_start_loc, positions, block_table, block_size, world, rank,
                       interleave, num_tokens, max_num_tokens, pad=-1):
    slots = [None] * max_num_tokens
    for req in range(len(query_start_loc) - 1):
        for token in range(query_start_loc[req], query_start_loc[req + 1]):
            pos = positions[token]
            virtual = block_size * world
            offset = pos % virtual
            if (offset // interleave) % world != rank:
                slots[token] = pad
                continue
            local = (offset // (world * interleave)) * interleave + offset % interleave
            slots[token] = block_table[req][pos // virtual] * block_size + local
    for token in range(num_tokens, max_num_tokens):
        slots[token] = pad
    return slots


@pytest.mark.parametrize("in_numpy", [True, False], ids=["host-numpy", "device-torch"])
@pytest.mark.parametrize(("world", "rank", "interleave"), [(1, 0, 1), (2, 1, 1), (2, 0, 4)])
def test_matches_the_triton_kernel_semantics(
    world: int, rank: int, interleave: int, in_numpy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Host tensors take the NumPy path; the PyTorch one (a device's) is forced here.
    monkeypatch.setattr(_kernels, "_on_host", lambda *tensors: in_numpy)
    block_size, stride = 4, 6
    query_lens = [3, 1, 5]
    context = [0, 7, 9]
    query_start_loc = [0]
    positions: list[int] = []
    for length, start in zip(query_lens, context, strict=True):
        query_start_loc.append(query_start_loc[-1] + length)
        positions.extend(range(start, start + length))
    generator = torch.Generator().manual_seed(0)
    block_table = torch.randperm(64, generator=generator)[: 4 * stride].reshape(4, stride)
    block_table = block_table.to(torch.int32)
    num_tokens, max_num_tokens = len(positions), len(positions) + 5
    slot_mapping = torch.full((max_num_tokens + 3,), 12345, dtype=torch.int64)

    compute_slot_mapping(
        num_tokens,
        max_num_tokens,
        torch.tensor(query_start_loc, dtype=torch.int32),
        torch.tensor(positions, dtype=torch.int64),
        block_table,
        stride,
        slot_mapping,
        KV_CACHE_BLOCK_SIZE=block_size,
        TOTAL_CP_WORLD_SIZE=world,
        TOTAL_CP_RANK=rank,
        CP_KV_CACHE_INTERLEAVE_SIZE=interleave,
    )

    expected = naive_slot_mapping(query_start_loc, positions, block_table.tolist(), block_size,
                                  world, rank, interleave, num_tokens, max_num_tokens)
    assert slot_mapping[:max_num_tokens].tolist() == expected
    assert slot_mapping[max_num_tokens:].tolist() == [12345] * 3, "wrote past max_num_tokens"
