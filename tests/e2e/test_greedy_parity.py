"""Greedy generation through vLLM with the plugin equals transformers, token for token."""

from __future__ import annotations

from typing import Any

import pytest

from vllm_npu.testing import DEFAULT_PROMPTS, TinyModelSpec, hf_greedy_generate

from .conftest import greedy_token_ids, vllm_engine

MAX_NEW_TOKENS = 24


def _counter(llm: Any, name: str) -> float:
    return sum(
        getattr(metric, "value", 0) or 0
        for metric in llm.get_metrics()
        if metric.name == name
    )


@pytest.mark.parametrize(
    "spec",
    [
        TinyModelSpec(arch="llama"),
        pytest.param(TinyModelSpec(arch="qwen2"), marks=pytest.mark.extended),
        pytest.param(
            TinyModelSpec(arch="qwen2", sliding_window=8),
            marks=pytest.mark.support("sliding_window", "host"),
        ),
    ],
    ids=["llama", "qwen2", "qwen2-sliding-window"],
)
def test_greedy_matches_transformers(spec: TinyModelSpec, tiny_model_dir) -> None:
    model = tiny_model_dir(spec)
    prompts = DEFAULT_PROMPTS
    assert len(prompts) >= 8 and len({len(p.split()) for p in prompts}) >= 8

    expected = hf_greedy_generate(model, prompts, MAX_NEW_TOKENS)
    with vllm_engine(str(model)) as llm:
        generated = greedy_token_ids(llm, prompts, MAX_NEW_TOKENS)

    assert generated == expected


def test_preempted_requests_are_recomputed_exactly(tiny_model_dir) -> None:
    """A KV cache of a few blocks forces preemption; outputs must not change."""
    model = tiny_model_dir(TinyModelSpec(arch="llama"))
    prompts = DEFAULT_PROMPTS
    expected = hf_greedy_generate(model, prompts, 48)

    block_bytes = 2 * 2 * 2 * 16 * 16 * 4  # K+V, layers, kv heads, head dim, block, fp32
    with vllm_engine(
        str(model),
        block_size=16,
        max_model_len=256,
        kv_cache_memory_bytes=20 * block_bytes,
        disable_log_stats=False,
    ) as llm:
        generated = greedy_token_ids(llm, prompts, 48)
        preemptions = _counter(llm, "vllm:num_preemptions")

    assert preemptions > 0, "the KV cache was large enough that nothing was preempted"
    assert generated == expected


@pytest.mark.support("prefix_caching", "host")
def test_prefix_caching_with_a_shared_prefix(tiny_model_dir) -> None:
    model = tiny_model_dir(TinyModelSpec(arch="qwen2"))
    shared = " ".join(DEFAULT_PROMPTS[-1].split()[:48])
    prompts = [f"{shared} {suffix}" for suffix in DEFAULT_PROMPTS[:8]]
    expected = hf_greedy_generate(model, prompts, MAX_NEW_TOKENS)

    with vllm_engine(
        str(model), enable_prefix_caching=True, block_size=16, disable_log_stats=False
    ) as llm:
        first = greedy_token_ids(llm, prompts[:1], MAX_NEW_TOKENS)
        rest = greedy_token_ids(llm, prompts[1:], MAX_NEW_TOKENS)
        hits = _counter(llm, "vllm:prefix_cache_hits")

    assert hits > 0, "no prefix cache hit: the shared prefix was recomputed"
    assert first + rest == expected
