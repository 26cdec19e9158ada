"""NPUAttentionImpl: decodes and prefills attended apart equal the batch attended whole."""

from __future__ import annotations

import pytest
import torch

from vllm_npu.attention import NPUAttentionImpl, NPUAttentionMetadata
from vllm_npu.attention.kernels import get_kernels

NUM_HEADS, NUM_KV_HEADS, HEAD_SIZE, BLOCK_SIZE = 4, 2, 8, 4


def _impl(**overrides) -> NPUAttentionImpl:
    fields = dict(
        num_heads=NUM_HEADS,
        head_size=HEAD_SIZE,
        scale=HEAD_SIZE**-0.5,
        num_kv_heads=NUM_KV_HEADS,
        alibi_slopes=None,
        sliding_window=None,
        kv_cache_dtype="auto",
    )
    return NPUAttentionImpl(**{**fields, **overrides})


def test_mixed_batch_split_matches_whole_batch() -> None:
    generator = torch.Generator().manual_seed(0)
    query_lens = [1, 1, 1, 5, 3]  # decodes first, as the runner orders them
    seq_lens = [6, 9, 2, 12, 3]
    num_tokens = sum(query_lens)
    kv_cache = torch.randn(40, NUM_KV_HEADS, BLOCK_SIZE, 2 * HEAD_SIZE, generator=generator)
    block_table = torch.randperm(40, generator=generator)[:20].reshape(5, 4).to(torch.int32)
    query = torch.randn(num_tokens + 2, NUM_HEADS, HEAD_SIZE, generator=generator)
    query_start_loc = torch.tensor([0, 1, 2, 3, 8, 11], dtype=torch.int32)
    seq_lens_t = torch.tensor(seq_lens, dtype=torch.int32)
    metadata = NPUAttentionMetadata(
        num_actual_tokens=num_tokens,
        max_query_len=5,
        max_seq_len=12,
        query_start_loc=query_start_loc,
        seq_lens=seq_lens_t,
        block_table=block_table,
        slot_mapping=torch.zeros(num_tokens, dtype=torch.int64),
        num_decodes=3,
        num_decode_tokens=3,
        prefill_query_start_loc=query_start_loc[3:] - 3,
    )
    impl = _impl(sliding_window=4)
    output = torch.full((num_tokens + 2, NUM_HEADS, HEAD_SIZE), 7.0)
    impl.forward(None, query, None, None, kv_cache, metadata, output=output)

    expected = torch.full_like(output, 7.0)
    get_kernels("reference").paged_attention(
        query[:num_tokens], kv_cache, block_table, query_start_loc, seq_lens_t,
        scale=impl.scale, output=expected[:num_tokens], sliding_window=4,
    )
    torch.testing.assert_close(output, expected)


def test_profiling_run_without_metadata_returns_output_untouched() -> None:
    output = torch.zeros(3, NUM_HEADS, HEAD_SIZE)
    assert _impl().forward(None, output, None, None, None, None, output=output) is output


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"alibi_slopes": [1.0] * NUM_HEADS}, "ALiBi"),
        ({"sinks": torch.zeros(NUM_HEADS)}, "attention sinks"),
        ({"kv_cache_dtype": "fp8"}, "kv_cache_dtype=fp8"),
        ({"attn_type": "encoder_only"}, "attention type encoder_only"),
    ],
)
def test_unsupported_features_are_refused_clearly(overrides, named: str) -> None:
    with pytest.raises(NotImplementedError, match=named) as raised:
        _impl(**overrides)
    assert "VLLM_NPU_ATTENTION_BACKEND" in str(raised.value)
