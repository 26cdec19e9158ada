"""Greedy generation with vLLM's data parallelism: one engine per data-parallel rank,
each in a process of its own (``LLM`` runs a single rank), ranks given their prompts
round-robin; prints ``RESULT <json>`` with the token ids in prompt order.

Usage: python _generate_data_parallel.py MODEL MAX_NEW_TOKENS RANKS PORT JSON_ENGINE_ARGS
       < prompts.json
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

RESULT_TIMEOUT_S = 1200


def _rank(
    rank: int,
    ranks: int,
    port: int,
    model: str,
    max_new_tokens: int,
    engine_args: dict[str, Any],
    prompts: list[str],
    results: Any,
) -> None:
    os.environ.update(
        VLLM_DP_RANK=str(rank),
        VLLM_DP_RANK_LOCAL=str(rank),
        VLLM_DP_SIZE=str(ranks),
        VLLM_DP_MASTER_IP="127.0.0.1",
        VLLM_DP_MASTER_PORT=str(port),
    )
    from conftest import greedy_token_ids, vllm_engine

    with vllm_engine(model, **engine_args) as llm:
        results.put((rank, greedy_token_ids(llm, prompts[rank::ranks], max_new_tokens)))


def main() -> None:
    model, max_new_tokens = sys.argv[1], int(sys.argv[2])
    ranks, port, engine_args = int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
    prompts = json.load(sys.stdin)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(
            target=_rank,
            args=(rank, ranks, port, model, max_new_tokens, engine_args, prompts, results),
        )
        for rank in range(ranks)
    ]
    for process in processes:
        process.start()
    by_rank = dict(results.get(timeout=RESULT_TIMEOUT_S) for _ in processes)
    for process in processes:
        process.join(timeout=120)
    token_ids: list[list[int]] = [[] for _ in prompts]
    for rank, outputs in by_rank.items():
        token_ids[rank::ranks] = outputs
    print("RESULT " + json.dumps(token_ids))


if __name__ == "__main__":
    main()
