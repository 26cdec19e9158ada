"""The paged layout of ``decode_attention.py``'s decode steps and their timing, shared
with the run under vLLM's CPU backend (``_cpu_decode_attention.py``): plain torch, no
vLLM."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def paged_block_table(prompts: list[int], steps: int, block_size: int) -> torch.Tensor:
    """``[requests, blocks each]`` int32: room for each prompt and ``steps`` more
    tokens, every request in blocks of its own, scattered over the cache (block 0
    unused); the cache then has ``block_table.numel() + 1`` blocks."""
    blocks_per_req = -(-(max(prompts) + steps) // block_size)
    count = len(prompts) * blocks_per_req
    generator = torch.Generator().manual_seed(0)
    blocks = torch.randperm(count, generator=generator) + 1
    return blocks.view(len(prompts), blocks_per_req).to(torch.int32)


def step_seq_lens(prompts: list[int], step: int) -> torch.Tensor:
    """The requests' lengths at decode step ``step`` (0-based), int32: each prompt and
    the ``step + 1`` tokens since, the last of them the query."""
    return torch.tensor([length + step + 1 for length in prompts], dtype=torch.int32)


def timed(run: Callable[[], None], repeats: int) -> tuple[float, float]:
    """Min and median seconds of ``run`` over ``repeats`` timings, after one warm-up."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)
