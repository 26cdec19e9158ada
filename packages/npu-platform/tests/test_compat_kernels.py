"""The slot-mapping kernel in each form vLLM has called it, and its installation."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from vllm_npu.platform import _compat
from vllm_npu.platform._kernels import compute_slot_mapping


def _inputs(block_table: torch.Tensor, query_lens: list[int], context: list[int]):
    query_start_loc, positions = [0], []
    for length, start in zip(query_lens, context, strict=True):
        query_start_loc.append(query_start_loc[-1] + length)
        positions.extend(range(start, start + length))
    return (
        torch.tensor(query_start_loc, dtype=torch.int32),
        torch.tensor(positions, dtype=torch.int64),
        block_table,
    )


def test_kernel_blocks_equal_to_kv_blocks_give_the_same_slots() -> None:
    block_table = torch.arange(24, dtype=torch.int32).flip(0).reshape(4, 6)
    query_start_loc, positions, _ = _inputs(block_table, [3, 1, 5], [0, 7, 9])
    num_tokens, max_num_tokens = len(positions), len(positions) + 3
    expected = torch.zeros(max_num_tokens, dtype=torch.int64)
    compute_slot_mapping(
        num_tokens,
        max_num_tokens,
        query_start_loc,
        positions,
        block_table,
        6,
        expected,
        KV_CACHE_BLOCK_SIZE=4,
    )
    before_0_32 = torch.zeros(max_num_tokens, dtype=torch.int64)
    _compat.compute_slot_mapping_in_kernel_blocks(
        num_tokens,
        max_num_tokens,
        query_start_loc,
        positions,
        block_table,
        6,
        4,
        before_0_32,
        KV_CACHE_BLOCK_SIZE=4,
        BLOCKS_PER_KV_BLOCK=1,
    )
    assert before_0_32.tolist() == expected.tolist()


def test_several_kernel_blocks_per_kv_block() -> None:
    """KV blocks of 8 tokens held as two kernel blocks of 4 in the block table."""
    block_table = torch.tensor([[5, 9, 2, 7], [3, 1, 8, 6]], dtype=torch.int32)
    query_start_loc, positions, _ = _inputs(block_table, [10, 3], [0, 6])
    slots = torch.zeros(len(positions) + 2, dtype=torch.int64)
    _compat.compute_slot_mapping_in_kernel_blocks(
        len(positions),
        len(positions) + 2,
        query_start_loc,
        positions,
        block_table,
        4,
        4,
        slots,
        KV_CACHE_BLOCK_SIZE=8,
        BLOCKS_PER_KV_BLOCK=2,
    )
    expected = [
        int(block_table[req, pos // 4]) * 4 + pos % 4
        for req, (start, length) in enumerate([(0, 10), (6, 3)])
        for pos in range(start, start + length)
    ]
    assert slots.tolist() == expected + [-1, -1]


def test_installed_where_this_vllm_launches_the_kernel() -> None:
    """In a fresh process, as in a worker: vLLM 0.31's dispatcher scans every
    loaded module, and some that other tests load cannot be scanned here."""
    code = textwrap.dedent(
        """
        from vllm.v1.worker import block_table
        from vllm_npu.platform import _compat

        how = _compat.register_slot_mapping_kernel()
        holder = getattr(block_table, "ComputeSlotMappingKernel", None)
        if how == "dispatcher":
            kernel = holder.kernel
        elif how == "kernel object":
            kernel = block_table._COMPUTE_SLOT_MAPPING_KERNEL.kernel
        else:
            kernel = block_table._compute_slot_mapping_kernel
        print(how, kernel.func.__name__, "block_size" in kernel.arg_names)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    how, func, takes_block_size = result.stdout.split()[-3:]
    expected = (
        _compat.compute_slot_mapping_in_kernel_blocks
        if takes_block_size == "True"
        else compute_slot_mapping
    )
    assert func == expected.__name__, how
