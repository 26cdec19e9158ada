"""Mixture-of-experts models through vLLM's fused MoE layer on our MoE kernels.

Host backend, float32: Mixtral, Qwen3-MoE and GLM-4-MoE (DeepSeek-V3's MoE with
dense attention) generate what transformers does, token for token, with one rank,
with two tensor-parallel ranks (experts sharded) and with expert parallelism over
them, and with two data-parallel ranks sharing the experts. The Ascend code path
(torch_npu MoE ops through the stand-in) runs Mixtral in float16 and GLM-4-MoE in
bfloat16; see
``test_moe_on_ascend_path`` for what float16 allows to check.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vllm_npu.testing import DEFAULT_PROMPTS, TinyModelSpec, hf_greedy_generate

from .conftest import greedy_token_ids, vllm_engine
from .test_ascend_path import _token_ids, generate_on_ascend_path

MAX_NEW_TOKENS = 24
KV_CACHE_BYTES = 64 << 20
ASCEND_MAX_NEW_TOKENS = 16
"""As test_ascend_path generates (its script's decision margins are per token)."""

HALF_SLACK = 0.75
"""Share of transformers-float16's (bfloat16's) agreement with float32 that the Ascend
path must keep."""

MOE_OPS = {
    "npu_moe_init_routing_v2",
    "npu_grouped_matmul",
    "npu_swiglu",
    "npu_moe_finalize_routing",
}


@pytest.mark.parametrize("arch", ["mixtral", "qwen3_moe", "glm4_moe"])
@pytest.mark.support("moe", "host")
def test_moe_greedy_matches_transformers(arch: str, tiny_model_dir) -> None:
    model = tiny_model_dir(TinyModelSpec(arch=arch))
    expected = hf_greedy_generate(model, DEFAULT_PROMPTS, MAX_NEW_TOKENS)
    with vllm_engine(str(model), kv_cache_memory_bytes=KV_CACHE_BYTES) as llm:
        generated = greedy_token_ids(llm, DEFAULT_PROMPTS, MAX_NEW_TOKENS)
    assert generated == expected


@pytest.mark.parametrize(
    "parallel",
    [
        {"tensor_parallel_size": 2},
        {"tensor_parallel_size": 2, "enable_expert_parallel": True},
    ],
    ids=["tensor-parallel-2", "expert-parallel-2"],
)
@pytest.mark.support("moe", "host")
def test_moe_parallel_matches_transformers(parallel: dict, tiny_model_dir) -> None:
    """GLM-4-MoE: grouped top-k, correction bias and a shared expert, sharded."""
    model = tiny_model_dir(TinyModelSpec(arch="glm4_moe"))
    expected = hf_greedy_generate(model, DEFAULT_PROMPTS, MAX_NEW_TOKENS)
    with vllm_engine(str(model), kv_cache_memory_bytes=KV_CACHE_BYTES, **parallel) as llm:
        generated = greedy_token_ids(llm, DEFAULT_PROMPTS, MAX_NEW_TOKENS)
    assert generated == expected


def _agreeing_prefix(generated: list[list[int]], reference: list[list[int]]) -> int:
    """Tokens generated before the first difference from the reference, summed."""
    total = 0
    for ours, theirs in zip(generated, reference, strict=True):
        total += next(
            (i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b), len(ours)
        )
    return total


@pytest.mark.support("moe", "ascend")
@pytest.mark.parametrize(
    ("arch", "dtype", "gating_op"),
    [
        ("mixtral", "float16", "npu_moe_gating_top_k_softmax"),
        ("glm4_moe", "bfloat16", "npu_moe_gating_top_k"),
    ],
)
def test_moe_on_ascend_path(
    arch: str, dtype: str, gating_op: str, tiny_model_dir, tmp_path: Path
) -> None:
    """In float16 these random MoE models are far from their float32 selves (teacher-
    forced logits differ by 0.1 to 9 in transformers, expert choices flip), so no
    prompt has a greedy decision clear of float16 rounding and token parity with
    transformers' float16 is not a property any two correct float16 implementations
    share. What is checked: the Ascend path runs its MoE layers on the torch_npu MoE
    ops, and it follows the float32 greedy continuation about as far as
    transformers in float16 does, within ``HALF_SLACK`` (the two break near-ties
    differently; a wiring error would lose the continuation within a token or two).
    GLM-4-MoE runs in bfloat16: in float16 vLLM 0.32 scales its shared expert's output
    by 1 / routed_scaling_factor instead of the routed output by the factor (an
    overflow guard, ``MoERunner._maybe_apply_routed_scale_to_output``) and, unlike
    DeepSeek-V2's, GLM-4-MoE's decoder layer does not compensate, so vLLM itself
    (any kernels) computes another function there.
    """
    model = tiny_model_dir(TinyModelSpec(arch=arch))
    prompts = list(DEFAULT_PROMPTS)
    float32 = hf_greedy_generate(model, prompts, ASCEND_MAX_NEW_TOKENS)
    half = hf_greedy_generate(model, prompts, ASCEND_MAX_NEW_TOKENS, dtype=getattr(torch, dtype))
    call_log = tmp_path / "calls.txt"

    output = generate_on_ascend_path(model, prompts, call_log, dtype=dtype)

    assert set(call_log.read_text().split()) >= MOE_OPS | {gating_op}, "a MoE op never ran"
    ascend = _agreeing_prefix(_token_ids(output), float32)
    transformers = _agreeing_prefix(half, float32)
    assert ascend >= HALF_SLACK * transformers, (
        f"the Ascend path kept {ascend} float32 tokens, transformers {dtype} {transformers}"
    )


DATA_PARALLEL_SCRIPT = Path(__file__).with_name("_generate_data_parallel.py")


@pytest.mark.support("dp", "host")
@pytest.mark.support("ep", "host")
def test_moe_data_and_expert_parallel_matches_transformers(tiny_model_dir) -> None:
    """Two data-parallel ranks sharing GLM-4-MoE's experts (expert parallelism over
    them): tokens are all-gathered to both ranks' experts and reduce-scattered back
    through our communicator."""
    model = tiny_model_dir(TinyModelSpec(arch="glm4_moe"))
    prompts = list(DEFAULT_PROMPTS)
    expected = hf_greedy_generate(model, prompts, MAX_NEW_TOKENS)
    engine_args = {"kv_cache_memory_bytes": KV_CACHE_BYTES, "enable_expert_parallel": True}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = subprocess.run(
        [
            sys.executable,
            str(DATA_PARALLEL_SCRIPT),
            str(model),
            str(MAX_NEW_TOKENS),
            "2",
            str(port),
            json.dumps(engine_args),
        ],
        input=json.dumps(prompts),
        capture_output=True,
        text=True,
        env={**os.environ, "VLLM_NPU_DEVICE": "host"},
        timeout=1500,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert _token_ids(output) == expected
