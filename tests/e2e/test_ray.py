"""vLLM's Ray executor on the host backend (Ray's CPU resource), token for token.

A one-node Ray cluster with two CPUs runs TP=2 and PP=2; a cluster of two nodes on
this machine, each offering one CPU (one worker), runs TP=2 across both nodes, and a
worker killed on the second node ends the engine with a clear error within a bounded
time. Each node listens on a loopback address of its own (Ray turns 127.0.0.1
itself into the machine's network address). Ray is an optional extra of the
product and part of the development environment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from vllm_npu.testing import DEFAULT_PROMPTS, TinyModelSpec, hf_greedy_generate

from ._ray_cluster import HEAD_IP, SECOND_NODE_IP, ray_cluster
from .conftest import greedy_token_ids, vllm_engine

pytest.importorskip("ray", reason="Ray is the optional extra vllm-npu[ray]")

SPEC = TinyModelSpec(arch="llama")
"""4 attention heads and 2 KV heads: both divide by the 2 ranks."""

MAX_NEW_TOKENS = 24
KV_CACHE_BYTES = 64 << 20
DEAD_WORKER_DEADLINE_S = 90
"""How long the engine may take to report a dead Ray worker before it counts as a hang."""

RAY_WORKER_TITLE = "RayWorkerProc"


def _ray_workers() -> dict[str, psutil.Process]:
    """This engine's Ray worker processes, by the address of the node running each."""
    workers: dict[str, psutil.Process] = {}
    for process in psutil.Process().children(recursive=True):
        try:
            if RAY_WORKER_TITLE not in " ".join(process.cmdline()):
                continue
            raylet = " ".join(process.parent().cmdline())
        except psutil.Error:
            continue
        node = next(ip for ip in (HEAD_IP, SECOND_NODE_IP) if f"node_ip_address={ip}" in raylet)
        workers[node] = process
    return workers


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> Path:
    return tiny_model_dir(SPEC)


@pytest.fixture(scope="module")
def transformers_tokens(model: Path) -> list[list[int]]:
    return hf_greedy_generate(model, DEFAULT_PROMPTS, MAX_NEW_TOKENS)


@pytest.fixture(scope="class")
def one_node() -> Iterator[str]:
    with ray_cluster((2,)) as address:
        yield address


@pytest.mark.usefixtures("one_node")
class TestOneNode:
    @pytest.mark.parametrize(
        "parallel",
        [
            {"tensor_parallel_size": 2},
            pytest.param({"pipeline_parallel_size": 2}, marks=pytest.mark.extended),
        ],
        ids=["tensor-parallel-2", "pipeline-parallel-2"],
    )
    @pytest.mark.support("ray", "host")
    def test_two_ranks_match_transformers(
        self, parallel: dict[str, int], model: Path, transformers_tokens: list[list[int]]
    ) -> None:
        with vllm_engine(
            str(model),
            distributed_executor_backend="ray",
            kv_cache_memory_bytes=KV_CACHE_BYTES,
            **parallel,
        ) as llm:
            assert set(_ray_workers()) == {HEAD_IP}
            generated = greedy_token_ids(llm, DEFAULT_PROMPTS, MAX_NEW_TOKENS)
        assert generated == transformers_tokens


@pytest.mark.extended
@pytest.mark.support("ray", "host")
def test_two_nodes_tensor_parallel_and_a_dead_worker(
    model: Path, transformers_tokens: list[list[int]]
) -> None:
    from vllm.v1.engine.exceptions import EngineDeadError

    outcome: dict[str, Any] = {}
    with ray_cluster((1, 1)), vllm_engine(
        str(model),
        distributed_executor_backend="ray",
        tensor_parallel_size=2,
        kv_cache_memory_bytes=KV_CACHE_BYTES,
    ) as llm:
        workers = _ray_workers()
        assert set(workers) == {HEAD_IP, SECOND_NODE_IP}, "TP=2 does not span both nodes"
        assert greedy_token_ids(llm, DEFAULT_PROMPTS, MAX_NEW_TOKENS) == transformers_tokens

        def generate() -> None:
            try:
                outcome["tokens"] = greedy_token_ids(llm, DEFAULT_PROMPTS * 8, 256)
            except Exception as error:
                outcome["error"] = error

        generation = threading.Thread(target=generate, daemon=True)
        generation.start()
        time.sleep(2)
        workers[SECOND_NODE_IP].kill()
        killed_at = time.monotonic()
        generation.join(DEAD_WORKER_DEADLINE_S)
        reported_after = time.monotonic() - killed_at
        assert not generation.is_alive(), (
            f"the engine still hangs {DEAD_WORKER_DEADLINE_S} s after a Ray worker died"
        )
    assert "tokens" not in outcome, "generation finished before the worker was killed"
    assert isinstance(outcome.get("error"), EngineDeadError), outcome
    assert reported_after < DEAD_WORKER_DEADLINE_S
