"""Mixture-of-experts models through vLLM's fused MoE layer on our MoE kernels.

Host backend, float32: Mixtral, Qwen3-MoE and GLM-4-MoE (DeepSeek-V3's MoE with
dense attention) generate what transformers does, token for token, with one rank,
with two tensor-parallel ranks (experts sharded) and with expert parallelism over
them, and with two data-parallel ranks sharing the experts. On the Ascend code path
(torch_npu MoE ops through the stand-in) the three generate what transformers does in
float16, on the prompts whose decisions are clear of float16 rounding.
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

from vllm_npu.testing import (
    DEFAULT_PROMPTS,
    TinyModelSpec,
    hf_greedy_generate,
    hf_greedy_margins,
    hf_greedy_routing_margins,
)

from .conftest import greedy_token_ids, vllm_engine
from .test_ascend_path import CLEAR_MARGIN, _token_ids, generate_on_ascend_path

MAX_NEW_TOKENS = 24
KV_CACHE_BYTES = 64 << 20
ASCEND_MAX_NEW_TOKENS = 16
"""As test_ascend_path generates (its script's decision margins are per token)."""

MOE_OPS = {
    "npu_moe_init_routing_v2",
    "npu_grouped_matmul",
    "npu_swiglu",
    "npu_moe_finalize_routing",
}


@pytest.mark.parametrize(
    "arch",
    [
        pytest.param("mixtral", marks=pytest.mark.extended),
        "qwen3_moe",
        pytest.param("glm4_moe", marks=pytest.mark.extended),
    ],
)
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
        pytest.param({"tensor_parallel_size": 2}, marks=pytest.mark.extended),
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


SHORT_PROMPTS = (
    "The river",
    "A computer reads",
    "In the spring",
    "Good tests are",
    "The old lighthouse",
    "Musicians played",
    "The cat slept",
    "Language models predict",
    "Fishermen waved",
    "She wrote a letter",
    "The garden was green",
    "Children ran",
)
"""Beside DEFAULT_PROMPTS: a prompt of few tokens makes few routing decisions, so
more prompts are clear of float16 rounding in all of them."""
SOFTMAX_ROUTING_MARGIN = 0.01
"""float32 gap between the last chosen and the best unchosen router logit above which
float16 implementations choose the same experts (float16 moves these models' router
logits by up to 4e-3)."""
SIGMOID_ROUTING_MARGIN = 0.0025
"""The same for sigmoid scores plus correction bias (float16 moves them by up to 1e-3)."""
SOFTMAX_GATING = "npu_moe_gating_top_k_softmax"


def clear_moe_prompts(model: Path, max_new_tokens: int, routing_margin: float) -> list[str]:
    """The prompts (of the default and short ones) whose float32 greedy next-token
    choices (``CLEAR_MARGIN``) and every router's choice of experts (``routing_margin``)
    are clear of float16 rounding: a near-tie there flips an expert, which moves the
    output by that expert's share. At least six, or the test's model seed is a bad one."""
    pool = [*DEFAULT_PROMPTS, *SHORT_PROMPTS]
    margins = hf_greedy_margins(model, pool, max_new_tokens)
    routing = hf_greedy_routing_margins(model, pool, max_new_tokens)
    prompts = [
        prompt
        for prompt, margin, gap in zip(pool, margins, routing, strict=True)
        if margin > CLEAR_MARGIN and gap > routing_margin
    ]
    assert len(prompts) >= 6, f"too few clear prompts: margins {margins}, routing {routing}"
    return prompts


@pytest.mark.support("moe", "ascend")
@pytest.mark.parametrize(
    ("spec", "gating_op", "routing_margin"),
    [
        pytest.param(
            TinyModelSpec(arch="mixtral", seed=2),
            SOFTMAX_GATING,
            SOFTMAX_ROUTING_MARGIN,
            marks=pytest.mark.extended,
        ),
        pytest.param(
            TinyModelSpec(arch="qwen3_moe", seed=1),
            SOFTMAX_GATING,
            SOFTMAX_ROUTING_MARGIN,
            marks=pytest.mark.extended,
        ),
        (
            TinyModelSpec(arch="glm4_moe", routed_scaling_factor=1.0),
            "npu_moe_gating_top_k",
            SIGMOID_ROUTING_MARGIN,
        ),
    ],
    ids=["mixtral", "qwen3_moe", "glm4_moe"],
)
def test_moe_matches_transformers_on_ascend_path(
    spec: TinyModelSpec, gating_op: str, routing_margin: float, tiny_model_dir, tmp_path: Path
) -> None:
    """Float16 on the torch_npu MoE ops (stand-in) against transformers in float16, on
    the prompts whose float32 greedy decisions are clear of float16 rounding: the
    next-token choices (``CLEAR_MARGIN``, as test_ascend_path) and every router's
    choice of experts (a near-tie there flips an expert, which moves the output by
    that expert's share). The seeds are ones whose models give enough such prompts.

    GLM-4-MoE (DeepSeek-V3's routing: grouped sigmoid top-k, correction bias, a shared
    expert) runs with a routed scaling factor of 1: with another factor vLLM in
    float16 divides the shared expert's output by it instead of multiplying the
    routed output (an overflow guard, ``MoERunner._maybe_apply_routed_scale_to_output``)
    and GLM-4-MoE's decoder layer, unlike DeepSeek-V2's, does not compensate, so vLLM
    itself (any kernels) computes another function than transformers there. The
    factor is checked on the host (float32) and by the kernel tests.
    """
    model = tiny_model_dir(spec)
    prompts = clear_moe_prompts(model, ASCEND_MAX_NEW_TOKENS, routing_margin)
    expected = hf_greedy_generate(model, prompts, ASCEND_MAX_NEW_TOKENS, dtype=torch.float16)
    call_log = tmp_path / "calls.txt"

    output = generate_on_ascend_path(model, prompts, call_log, dtype="float16")

    assert set(call_log.read_text().split()) >= MOE_OPS | {gating_op}, "a MoE op never ran"
    assert _token_ids(output) == expected


DATA_PARALLEL_SCRIPT = Path(__file__).with_name("_generate_data_parallel.py")


@pytest.mark.extended
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
