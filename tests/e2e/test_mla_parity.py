"""Multi-head latent attention (DeepSeek-V2/V3 shaped tiny models) through the MLA
backend equals transformers greedy decoding, token for token: prompts prefilled in
chunks, prompts that hit the prefix cache, and with tensor parallelism. The DeepSeek-V2
has MoE layers after its first dense one (a shared expert, group-limited top-k routing
with a routed scaling factor); the DeepSeek-V3 dense MLPs."""

from __future__ import annotations

from typing import Any

import pytest

from vllm_npu.testing import DEFAULT_PROMPTS, TinyModelSpec, hf_greedy_generate

from .conftest import greedy_token_ids, vllm_engine

MAX_NEW_TOKENS = 16
CHUNK_TOKENS = 32
"""max_num_batched_tokens: longer prompts are prefilled in several chunks, beside decodes."""
KV_CACHE_BYTES = 64 << 20
SHARED = " ".join(DEFAULT_PROMPTS[9].split()[:40])
"""A prefix of a default prompt: prompts that start with it reuse its cached blocks."""
PREFIX_PROMPTS = [f"{SHARED} {suffix}" for suffix in DEFAULT_PROMPTS[:3]]


def _counter(llm: Any, name: str) -> float:
    return sum(
        getattr(metric, "value", 0) or 0
        for metric in llm.get_metrics()
        if metric.name == name
    )


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(
            TinyModelSpec(arch="deepseek_v2", mla_moe=True),
            marks=pytest.mark.support("moe", "host"),
            id="deepseek-v2-moe",
        ),
        pytest.param(TinyModelSpec(arch="deepseek_v3"), id="deepseek-v3"),
    ],
)
@pytest.mark.support("mla", "host")
@pytest.mark.support("chunked_prefill", "host")
@pytest.mark.support("prefix_caching", "host")
def test_mla_matches_transformers_chunked_and_prefix_cached(
    spec: TinyModelSpec, tiny_model_dir
) -> None:
    model = tiny_model_dir(spec)
    expected = hf_greedy_generate(model, [*DEFAULT_PROMPTS, *PREFIX_PROMPTS], MAX_NEW_TOKENS)

    with vllm_engine(
        str(model),
        kv_cache_memory_bytes=KV_CACHE_BYTES,
        block_size=16,
        enable_prefix_caching=True,
        max_num_batched_tokens=CHUNK_TOKENS,
        max_num_seqs=4,
        disable_log_stats=False,
    ) as llm:
        longest = max(len(llm.get_tokenizer()(p).input_ids) for p in DEFAULT_PROMPTS)
        generated = greedy_token_ids(llm, DEFAULT_PROMPTS, MAX_NEW_TOKENS)
        hits_before = _counter(llm, "vllm:prefix_cache_hits")
        generated += greedy_token_ids(llm, PREFIX_PROMPTS, MAX_NEW_TOKENS)
        hits = _counter(llm, "vllm:prefix_cache_hits") - hits_before

    assert longest > 2 * CHUNK_TOKENS, "no prompt was long enough to be prefilled in chunks"
    assert hits >= len(PREFIX_PROMPTS) * 16, "the shared prefix was not read from the cache"
    assert generated == expected


@pytest.mark.extended
@pytest.mark.support("mla", "host")
def test_mla_tensor_parallel_2_matches_transformers(tiny_model_dir) -> None:
    """4 heads: 2 per rank; the latent cache (one KV head) is replicated on both."""
    spec = TinyModelSpec(arch="deepseek_v3")
    model = tiny_model_dir(spec)
    expected = hf_greedy_generate(model, DEFAULT_PROMPTS, MAX_NEW_TOKENS)

    with vllm_engine(
        str(model), kv_cache_memory_bytes=KV_CACHE_BYTES, tensor_parallel_size=2
    ) as llm:
        generated = greedy_token_ids(llm, DEFAULT_PROMPTS, MAX_NEW_TOKENS)

    assert generated == expected
