"""Multi-head latent attention on the Ascend code path inside real vLLM: a DeepSeek-V2
and a DeepSeek-V3 (query LoRA, yarn rope scaling) of the real MLA sizes (latent 512,
rope 64, nope and values 128: the only ones Ascend's MLA ops take) through the ascend
MLA kernels on the torch_npu stand-in generate what transformers does in float16.

The decision-margin rule of test_ascend_path: only the prompts whose float32 greedy
decisions are clear of float16 rounding. The prefill op computes in bfloat16 (its only
dtype there), and chunked prefill (a small ``max_num_batched_tokens``) makes later
chunks attend over the context read back from the latent cache, beside decodes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vllm_npu.testing import (
    TinyModelSpec,
    hf_greedy_generate,
)

from .test_ascend_path import (
    MAX_NEW_TOKENS,
    _token_ids,
    clear_greedy_prompts,
    generate_on_ascend_path,
)

REAL_MLA = {
    arch: TinyModelSpec(
        arch=arch, mla_dims="real", num_heads=8, hidden_size=128, intermediate_size=256
    )
    for arch in ("deepseek_v2", "deepseek_v3")
}
"""8 heads: the fewest the prefill op (TND without page attention) takes. DeepSeek-V3's
shape adds a query LoRA rank and yarn rope scaling."""
CHUNK_TOKENS = 64
KV_CACHE_BYTES = 64 << 20
MLA_OPS = {
    "_npu_reshape_and_cache",
    "npu_multi_head_latent_attention",
    "npu_fused_infer_attention_score",
}


@pytest.mark.support("mla", "ascend")
@pytest.mark.support("chunked_prefill", "ascend")
@pytest.mark.parametrize(
    "arch", [pytest.param("deepseek_v2", marks=pytest.mark.extended), "deepseek_v3"]
)
def test_mla_real_dimensions_match_transformers_on_ascend_path(
    arch: str, tiny_model_dir, tmp_path: Path
) -> None:
    model = tiny_model_dir(REAL_MLA[arch])
    prompts = clear_greedy_prompts(model)
    expected = hf_greedy_generate(model, prompts, MAX_NEW_TOKENS, dtype=torch.float16)
    call_log = tmp_path / "calls.txt"

    output = generate_on_ascend_path(
        model,
        prompts,
        call_log,
        dtype="float16",
        kv_cache_memory_bytes=KV_CACHE_BYTES,
        max_num_batched_tokens=CHUNK_TOKENS,
        max_num_seqs=4,
    )

    assert "KV cache block size 128" in output
    assert set(call_log.read_text().split()) >= MLA_OPS, "an Ascend MLA op never ran"
    assert _token_ids(output) == expected
