"""The reference MLA kernels against naive per-request attention, and the identity
weight absorption relies on (absorbed decode == expanded multi-head attention)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor

from vllm_npu.attention import mla_kernels
from vllm_npu.attention.mla_kernels import _reference
from vllm_npu.attention.mla_kernels._reference import (
    decode_attention,
    gather_latent,
    prefill_attention,
    write_latent_cache,
)

LATENT, ROPE, HEADS, BLOCK = 12, 4, 3, 4


def naive_attention(q: Tensor, k: Tensor, v: Tensor, scale: float, causal: bool) -> Tensor:
    """One request: q [n, h, d], k [m, h, d], v [m, h, dv]; end-aligned causal mask."""
    scores = torch.einsum("nhd,mhd->hnm", q.double(), k.double()) * scale
    n, m = q.shape[0], k.shape[0]
    if causal:
        allowed = torch.arange(m)[None, :] <= torch.arange(n)[:, None] + (m - n)
        scores = scores.masked_fill(~allowed, -math.inf)
    return torch.einsum("hnm,mhd->nhd", scores.softmax(-1), v.double())


def paged_cache(seq_lens: list[int], generator: torch.Generator):
    """A NaN-filled latent cache holding random rows for each request's positions in
    shuffled blocks; returns the cache, block table and each request's rows."""
    blocks_needed = [-(-s // BLOCK) for s in seq_lens]
    num_blocks = sum(blocks_needed) + 2
    cache = torch.full((num_blocks, BLOCK, LATENT + ROPE), math.nan)
    order = torch.randperm(num_blocks, generator=generator).tolist()
    table = torch.zeros(len(seq_lens), max(blocks_needed) + 1, dtype=torch.int32)
    rows = []
    for r, seq_len in enumerate(seq_lens):
        ids = [order.pop() for _ in range(blocks_needed[r])]
        table[r, : len(ids)] = torch.tensor(ids)
        table[r, len(ids):] = order[0]  # stale entries past the last block
        request_rows = torch.randn(seq_len, LATENT + ROPE, generator=generator)
        for p in range(seq_len):
            cache[ids[p // BLOCK], p % BLOCK] = request_rows[p]
        rows.append(request_rows)
    return cache, table, rows


def test_write_latent_cache_stores_rows_and_skips_padding() -> None:
    flat = torch.full((2 * 3 * BLOCK * (LATENT + ROPE),), math.nan)
    # A strided view, as vLLM's flat buffer gives it: every other block.
    cache = flat.view(6, BLOCK, LATENT + ROPE)[::2]
    kv_c, k_pe = torch.randn(4, LATENT), torch.randn(4, 1, ROPE)
    slots = torch.tensor([5, -1, 0, 11, 3])  # one more slot than tokens
    write_latent_cache(kv_c, k_pe, cache, slots)
    for token, slot in enumerate([5, -1, 0, 11]):
        if slot < 0:
            continue
        row = cache[slot // BLOCK, slot % BLOCK]
        torch.testing.assert_close(row, torch.cat([kv_c[token], k_pe[token, 0]]))
    assert torch.isnan(cache[0, 1]).all() and torch.isnan(cache[1, 0]).all()


def test_write_latent_cache_rejects_rows_of_the_wrong_size() -> None:
    cache = torch.zeros(2, BLOCK, LATENT + ROPE)
    with pytest.raises(ValueError, match="kv_lora_rank 12 \\+ rope 3"):
        write_latent_cache(torch.zeros(1, LATENT), torch.zeros(1, ROPE - 1), cache, torch.zeros(1))


def test_gather_latent_reads_each_token_row() -> None:
    generator = torch.Generator().manual_seed(0)
    cache, table, rows = paged_cache([5, 9], generator)
    requests = torch.tensor([0] * 5 + [1] * 9)
    positions = torch.tensor(list(range(5)) + list(range(9)))
    torch.testing.assert_close(gather_latent(cache, table, requests, positions), torch.cat(rows))


@pytest.mark.parametrize("budget", [_reference.CHUNK_BUDGET_BYTES, 1], ids=["one-batch", "chunked"])
@pytest.mark.parametrize("seq_lens", [[1], [7, 1, 12], [4, 8]])
def test_decode_attention_matches_naive(
    seq_lens: list[int], budget: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_reference, "CHUNK_BUDGET_BYTES", budget)
    generator = torch.Generator().manual_seed(len(seq_lens))
    cache, table, rows = paged_cache(seq_lens, generator)
    query = torch.randn(len(seq_lens), HEADS, LATENT + ROPE, generator=generator)
    scale = 0.3
    out = decode_attention(
        query, cache, table, torch.tensor(seq_lens), scale=scale, kv_lora_rank=LATENT,
        max_seq_len=max(seq_lens),
    )
    for r, context in enumerate(rows):
        keys = context[:, None].expand(-1, HEADS, -1)
        expected = naive_attention(query[r : r + 1], keys, keys[..., :LATENT], scale, False)
        torch.testing.assert_close(out[r], expected[0].float(), rtol=1e-5, atol=1e-5)


def test_absorbed_decode_equals_expanded_multi_head_attention() -> None:
    """q_nope . (W_UK c) == (q_nope W_UK) . c and softmax(.) (W_UV c) == W_UV (softmax(.) c):
    the identity vLLM's MLA layer uses for decode."""
    generator = torch.Generator().manual_seed(3)
    nope, v_dim, seq_len = 5, 6, 10
    cache, table, (context,) = paged_cache([seq_len], generator)
    w_uk = torch.randn(HEADS, nope, LATENT, generator=generator)
    w_uv = torch.randn(HEADS, LATENT, v_dim, generator=generator)
    q_nope = torch.randn(1, HEADS, nope, generator=generator)
    q_pe = torch.randn(1, HEADS, ROPE, generator=generator)
    kv_c, k_pe = context[:, :LATENT], context[:, LATENT:]

    absorbed = torch.cat([torch.einsum("bhp,hpl->bhl", q_nope, w_uk), q_pe], dim=-1)
    latent_out = decode_attention(
        absorbed, cache, table, torch.tensor([seq_len]), scale=0.2, kv_lora_rank=LATENT,
        max_seq_len=seq_len,
    )
    out = torch.einsum("bhl,hlv->bhv", latent_out, w_uv)

    keys = torch.cat(
        [torch.einsum("ml,hpl->mhp", kv_c, w_uk), k_pe[:, None].expand(-1, HEADS, -1)], -1
    )
    values = torch.einsum("ml,hlv->mhv", kv_c, w_uv)
    expected = naive_attention(torch.cat([q_nope, q_pe], -1), keys, values, 0.2, False)
    torch.testing.assert_close(out, expected.float(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("causal", [True, False])
def test_prefill_attention_matches_naive_with_lse(causal: bool) -> None:
    generator = torch.Generator().manual_seed(4)
    query_lens, kv_lens = [3, 1, 6, 0], [7, 1, 6, 2]  # a prefix hit, a new prompt, none
    qk, v_dim = 7, 5
    q = torch.randn(sum(query_lens), HEADS, qk, generator=generator)
    k = torch.randn(sum(kv_lens), HEADS, qk, generator=generator)
    v = torch.randn(sum(kv_lens), HEADS, v_dim, generator=generator)
    q_loc = [0, *torch.tensor(query_lens).cumsum(0).tolist()]
    kv_loc = [0, *torch.tensor(kv_lens).cumsum(0).tolist()]
    out, lse = prefill_attention(
        q, k, v, q_loc, kv_loc, scale=0.4, causal=causal, return_lse=True
    )
    for r in range(len(query_lens)):
        qs, ks = slice(q_loc[r], q_loc[r + 1]), slice(kv_loc[r], kv_loc[r + 1])
        if qs.start == qs.stop:
            continue
        expected = naive_attention(q[qs], k[ks], v[ks], 0.4, causal)
        torch.testing.assert_close(out[qs], expected.float(), rtol=1e-5, atol=1e-5)
        scores = torch.einsum("nhd,mhd->hnm", q[qs], k[ks]) * 0.4
        if causal:
            n, m = qs.stop - qs.start, ks.stop - ks.start
            scores = scores.masked_fill(
                torch.ones(n, m, dtype=torch.bool).triu(m - n + 1), -math.inf
            )
        torch.testing.assert_close(lse[:, qs], scores.logsumexp(-1), rtol=1e-5, atol=1e-5)


def test_prefill_backend_matches_vllms_cpu_prefill_backend() -> None:
    """Our MLAPrefillBackend (for impls built on vLLM's MLACommonImpl) agrees with vLLM's
    own PyTorch one on new tokens and on context chunks."""
    pytest.importorskip("vllm.v1.attention.backends.mla.prefill.cpu_sdpa")
    from vllm.config import VllmConfig, set_current_vllm_config
    from vllm.v1.attention.backends.mla.prefill.cpu_sdpa import CPUSDPAMLAPrefillBackend

    from vllm_npu.attention.mla import NPUMLAPrefillBackend

    generator = torch.Generator().manual_seed(5)
    dims = dict(num_heads=HEADS, scale=0.3, kv_lora_rank=LATENT, qk_nope_head_dim=5,
                qk_rope_head_dim=ROPE, v_head_dim=6)
    query_start_loc = torch.tensor([0, 4, 5, 11])
    q = torch.randn(11, HEADS, 9, generator=generator)
    k = torch.randn(11, HEADS, 9, generator=generator)
    v = torch.randn(11, HEADS, 6, generator=generator)
    chunk = SimpleNamespace(
        query_start_loc=query_start_loc, cu_seq_lens=torch.tensor([0, 2, 8, 9])
    )
    k_ctx, v_ctx = k[:9], v[:9]
    with set_current_vllm_config(VllmConfig()):
        ours = NPUMLAPrefillBackend(**dims, vllm_config=VllmConfig())
        theirs = CPUSDPAMLAPrefillBackend(**dims, vllm_config=VllmConfig())
        for backend in (ours, theirs):
            backend.prepare_metadata(SimpleNamespace(query_start_loc=query_start_loc))
        for lse in (False, True):
            torch.testing.assert_close(
                ours.run_prefill_new_tokens(q, k, v, return_softmax_lse=lse),
                theirs.run_prefill_new_tokens(q, k, v, return_softmax_lse=lse),
            )
        torch.testing.assert_close(
            ours.run_prefill_context_chunk(chunk, q, k_ctx, v_ctx),
            theirs.run_prefill_context_chunk(chunk, q, k_ctx, v_ctx),
        )


def test_mla_kernel_sets_are_found_by_name_with_a_clear_error() -> None:
    assert mla_kernels.get_mla_kernels("reference").name == "reference"
    assert "reference" in mla_kernels.available_mla_kernels()
    with pytest.raises(ValueError, match="no MLA kernels for the 'nope' attention kernel set"):
        mla_kernels.get_mla_kernels("nope")
    with pytest.raises(TypeError, match="not an MLA kernel set"):
        mla_kernels.register_mla_kernels("broken", object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already registered"):
        mla_kernels.register_mla_kernels("reference", SimpleNamespace(
            **{name: getattr(mla_kernels.get_mla_kernels("reference"), name)
               for name in ("name", "block_size", "dtypes", "unsupported",
                            "write_latent_cache", "zero_blocks", "gather_latent",
                            "decode_attention", "prefill_attention")}
        ))
