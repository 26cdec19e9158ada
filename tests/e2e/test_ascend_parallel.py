"""Several ranks on the Ascend code path: the Ascend kernel set, model runner, KV
layout and block size in every worker, collectives through ``NPUCommunicator``
(gloo between the stand-in's ranks, HCCL on NPUs), against transformers in float16.

Three engines, one per way of splitting the work: Ray's executor with two
tensor-parallel ranks on two of the stand-in's NPUs (Ray's ``NPU`` resource), two
pipeline-parallel ranks under the multiprocessing executor, and two data-parallel
ranks of a mixture-of-experts model sharing its experts (expert parallelism). As in
test_ascend_path, only prompts whose float32 greedy decisions (and, for MoE, routing
decisions) are clear of float16 rounding are compared. The stand-in's call log shows
which processes ran the Ascend ops and which NPU each rank's process took. Each engine
costs minutes on two cores: the extended tier.
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from pathlib import Path

import pytest
import torch

from vllm_npu.testing import (
    TinyModelSpec,
    hf_greedy_generate,
)

from .test_ascend_path import (
    ASCEND_OPS,
    MAX_NEW_TOKENS,
    _token_ids,
    clear_greedy_prompts,
    generate_on_ascend_path,
    run_on_ascend_path,
)
from .test_moe import MOE_OPS, SIGMOID_ROUTING_MARGIN, clear_moe_prompts

pytestmark = pytest.mark.extended

RANKS = 2
KV_CACHE_BYTES = 64 << 20
"""Every rank zeroes its KV cache at start; a small one keeps that short."""
DENSE_SPEC = TinyModelSpec(arch="llama")
"""4 query heads of size 16 and 2 KV heads: 2 and 1 per tensor-parallel rank, within
the Ascend attention ops' limits (head size a multiple of 16, heads divisible by KV
heads)."""
MOE_SPEC = TinyModelSpec(arch="glm4_moe", routed_scaling_factor=1.0)
"""As test_moe's Ascend-path GLM-4-MoE (grouped sigmoid top-k, correction bias, a
shared expert; routed scale 1, see there)."""
DATA_PARALLEL_SCRIPT = Path(__file__).with_name("_generate_data_parallel.py")


@pytest.fixture
def two_npus(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in machine has two NPUs (one per rank)."""
    monkeypatch.setenv("VLLM_NPU_STANDIN_DEVICES", str(RANKS))


@pytest.fixture(scope="module")
def dense_model(tiny_model_dir) -> Path:
    assert DENSE_SPEC.num_heads % RANKS == 0 and DENSE_SPEC.num_kv_heads % RANKS == 0
    return tiny_model_dir(DENSE_SPEC)


@pytest.fixture(scope="module")
def dense_case(dense_model: Path) -> tuple[list[str], list[list[int]]]:
    """The prompts clear of float16 rounding and transformers' float16 tokens."""
    prompts = clear_greedy_prompts(dense_model)
    return prompts, hf_greedy_generate(dense_model, prompts, MAX_NEW_TOKENS, torch.float16)


def processes_calling(call_log: Path) -> Counter[str]:
    """How many processes called each stand-in op (each logs an op once), and set
    each NPU as their device (``set_device:<index>``)."""
    return Counter(call_log.read_text().split())


ONE_NPU_PER_RANK = {f"set_device:{index}": 1 for index in range(RANKS)}
"""Each rank's process set an NPU of its own, and no other process set one."""


def devices_set(calls: Counter[str]) -> dict[str, int]:
    return {name: count for name, count in calls.items() if name.startswith("set_device:")}


@pytest.mark.support("tp", "ascend")
@pytest.mark.support("ray", "ascend")
@pytest.mark.usefixtures("two_npus")
def test_ray_tensor_parallel_2_matches_transformers_on_ascend_path(
    dense_model: Path, dense_case: tuple[list[str], list[list[int]]], tmp_path: Path
) -> None:
    """vLLM's Ray executor places each tensor-parallel rank on an NPU of its own
    (Ray's ``NPU`` resource, ``ASCEND_RT_VISIBLE_DEVICES``); both run the Ascend ops."""
    pytest.importorskip("ray", reason="Ray is the optional extra vllm-npu[ray]")
    from ._ray_cluster import ray_cluster

    prompts, expected = dense_case
    call_log, call_specs = tmp_path / "calls.txt", tmp_path / "call_specs.jsonl"
    # Ray's workers start from the node's environment (the engine passes them
    # VLLM_NPU_DEVICE): the call logs and the stand-in's NPU count go there.
    worker_env = {
        "VLLM_NPU_STANDIN_CALL_LOG": str(call_log),
        "VLLM_NPU_STANDIN_CALL_SPECS": str(call_specs),
        "VLLM_NPU_STANDIN_DEVICES": str(RANKS),
    }
    with ray_cluster((RANKS,), resources={"NPU": RANKS}, env=worker_env) as address:
        output = generate_on_ascend_path(
            dense_model,
            prompts,
            call_log,
            dtype="float16",
            tensor_parallel_size=RANKS,
            distributed_executor_backend="ray",
            kv_cache_memory_bytes=KV_CACHE_BYTES,
        )

    assert f"Connecting to existing Ray cluster at address: {address}" in output
    assert "KV cache block size 128" in output
    calls = processes_calling(call_log)
    assert {op: calls[op] for op in ASCEND_OPS} == dict.fromkeys(ASCEND_OPS, RANKS), calls
    assert devices_set(calls) == ONE_NPU_PER_RANK, calls
    # Each rank attends over its share of the heads: 2 query heads, 1 KV head.
    specs = [json.loads(line) for line in call_specs.read_text().splitlines()]
    decode_calls = [spec["kwargs"] for spec in specs if spec["op"] == "_npu_paged_attention"]
    assert decode_calls, "no decode step ran _npu_paged_attention"
    heads = {(call["num_heads"]["int"], call["num_kv_heads"]["int"]) for call in decode_calls}
    per_rank = (DENSE_SPEC.num_heads // RANKS, DENSE_SPEC.num_kv_heads // RANKS)
    assert heads == {per_rank}, heads
    assert _token_ids(output) == expected


@pytest.mark.support("pp", "ascend")
@pytest.mark.usefixtures("two_npus")
def test_pipeline_parallel_2_matches_transformers_on_ascend_path(
    dense_model: Path, dense_case: tuple[list[str], list[list[int]]], tmp_path: Path
) -> None:
    prompts, expected = dense_case
    call_log = tmp_path / "calls.txt"

    output = generate_on_ascend_path(
        dense_model,
        prompts,
        call_log,
        dtype="float16",
        pipeline_parallel_size=RANKS,
        kv_cache_memory_bytes=KV_CACHE_BYTES,
    )

    assert "KV cache block size 128" in output
    calls = processes_calling(call_log)
    # The first stage alone normalises without a residual (the first layer's input).
    both_stages = ASCEND_OPS - {"npu_rms_norm"}
    assert {op: calls[op] for op in both_stages} == dict.fromkeys(both_stages, RANKS), calls
    assert calls["npu_rms_norm"] == 1, calls
    assert devices_set(calls) == ONE_NPU_PER_RANK, calls
    assert _token_ids(output) == expected


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.support("dp", "ascend")
@pytest.mark.support("ep", "ascend")
@pytest.mark.usefixtures("two_npus")
def test_moe_data_and_expert_parallel_matches_transformers_on_ascend_path(
    tiny_model_dir, tmp_path: Path
) -> None:
    """Two data-parallel ranks, each on an NPU of its own, share GLM-4-MoE's experts
    (expert parallelism over them): tokens are all-gathered to both ranks' experts and
    reduce-scattered back through our communicator, on the torch_npu MoE ops (a token
    routed to the other rank's expert passes a local expert with weight 0, not
    npu_moe_distribute_dispatch/combine)."""
    model = tiny_model_dir(MOE_SPEC)
    prompts = clear_moe_prompts(model, MAX_NEW_TOKENS, SIGMOID_ROUTING_MARGIN)
    expected = hf_greedy_generate(model, prompts, MAX_NEW_TOKENS, dtype=torch.float16)
    call_log = tmp_path / "calls.txt"
    engine_args = {
        "dtype": "float16",
        "enable_expert_parallel": True,
        "kv_cache_memory_bytes": KV_CACHE_BYTES,
    }
    arguments = [str(model), str(MAX_NEW_TOKENS), str(RANKS), str(_free_port())]

    output = run_on_ascend_path(
        DATA_PARALLEL_SCRIPT, [*arguments, json.dumps(engine_args)], prompts, call_log
    )

    calls = processes_calling(call_log)
    moe_ops = MOE_OPS | {"npu_moe_gating_top_k"}
    assert {op: calls[op] for op in moe_ops} == dict.fromkeys(moe_ops, RANKS), calls
    # The second data-parallel engine's worker takes the node's second NPU.
    assert devices_set(calls) == ONE_NPU_PER_RANK, calls
    assert _token_ids(output) == expected
