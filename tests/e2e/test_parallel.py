"""Tensor and pipeline parallelism on the host backend, through ``NPUCommunicator``.

Greedy generation with 2 ranks equals 1 rank equals transformers, token for
token; a worker that dies during generation stops the engine with a clear error
within a bounded time.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from vllm_npu.testing import DEFAULT_PROMPTS, TinyModelSpec, hf_greedy_generate

from .conftest import greedy_token_ids, vllm_engine

SPEC = TinyModelSpec(arch="llama")
"""4 attention heads and 2 KV heads: both divide by the 2 ranks."""

MAX_NEW_TOKENS = 24
KV_CACHE_BYTES = 64 << 20
"""Every rank zeroes its KV cache at start; the host default (4 GiB) costs seconds."""

DEAD_WORKER_DEADLINE_S = 60
"""How long the engine may take to report a dead worker before it counts as a hang."""


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> Path:
    assert SPEC.num_heads % 2 == 0 and SPEC.num_kv_heads % 2 == 0
    return tiny_model_dir(SPEC)


@pytest.fixture(scope="module")
def transformers_tokens(model: Path) -> list[list[int]]:
    return hf_greedy_generate(model, DEFAULT_PROMPTS, MAX_NEW_TOKENS)


@pytest.fixture(scope="module")
def single_rank_tokens(model: Path) -> list[list[int]]:
    with vllm_engine(str(model), kv_cache_memory_bytes=KV_CACHE_BYTES) as llm:
        return greedy_token_ids(llm, DEFAULT_PROMPTS, MAX_NEW_TOKENS)


def test_single_rank_matches_transformers(
    single_rank_tokens: list[list[int]], transformers_tokens: list[list[int]]
) -> None:
    assert single_rank_tokens == transformers_tokens


@pytest.mark.parametrize(
    "parallel",
    [
        pytest.param({"tensor_parallel_size": 2}, marks=pytest.mark.support("tp", "host")),
        pytest.param(
            {"pipeline_parallel_size": 2},
            marks=(pytest.mark.support("pp", "host"), pytest.mark.extended),
        ),
    ],
    ids=["tensor-parallel-2", "pipeline-parallel-2"],
)
def test_two_ranks_match_one_rank_and_transformers(
    parallel: dict[str, int],
    model: Path,
    single_rank_tokens: list[list[int]],
    transformers_tokens: list[list[int]],
) -> None:
    with vllm_engine(
        str(model), kv_cache_memory_bytes=KV_CACHE_BYTES, **parallel
    ) as llm:
        generated = greedy_token_ids(llm, DEFAULT_PROMPTS, MAX_NEW_TOKENS)

    assert generated == single_rank_tokens
    assert generated == transformers_tokens


def _worker_process(title: str) -> psutil.Process:
    """A worker of the running engine, found by the process title vLLM gives it."""
    for process in psutil.Process().children(recursive=True):
        try:
            if title in " ".join(process.cmdline()):
                return process
        except psutil.Error:
            continue
    raise AssertionError(f"no process titled {title!r} among this test's children")


def test_a_dead_worker_stops_the_engine_with_a_clear_error(model: Path) -> None:
    from vllm.v1.engine.exceptions import EngineDeadError

    outcome: dict[str, Any] = {}

    with vllm_engine(
        str(model), tensor_parallel_size=2, kv_cache_memory_bytes=KV_CACHE_BYTES
    ) as llm:
        # Rank 0 returns the model output: only the engine's watch over its
        # workers can notice its death, as no collective error reaches the engine.
        worker = _worker_process("Worker_TP0")

        def generate() -> None:
            try:
                outcome["tokens"] = greedy_token_ids(llm, DEFAULT_PROMPTS * 8, 256)
            except Exception as error:
                outcome["error"] = error

        generation = threading.Thread(target=generate, daemon=True)
        generation.start()
        time.sleep(2)
        worker.kill()
        killed_at = time.monotonic()
        generation.join(DEAD_WORKER_DEADLINE_S)
        reported_after = time.monotonic() - killed_at

        assert not generation.is_alive(), (
            f"the engine still hangs {DEAD_WORKER_DEADLINE_S} s after a worker died"
        )
    assert "tokens" not in outcome, "generation finished before the worker was killed"
    assert isinstance(outcome.get("error"), EngineDeadError), outcome
    assert reported_after < DEAD_WORKER_DEADLINE_S
    assert "EngineCore encountered an issue" in str(outcome["error"])
