"""The ascend MLA kernel set, run on the torch_npu stand-in, against the reference set.

Both sets write the same tokens into their own latent cache layouts, read the same
contexts back, and attend the same queries; the stand-in's MLA ops reject what the
real ops reject (their documented limits).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest
import torch

from vllm_npu.attention.mla_kernels import _ascend, get_mla_kernels
from vllm_npu.testing.standin import installed

ASCEND = get_mla_kernels("ascend")
REFERENCE = get_mla_kernels("reference")
BLOCK = _ascend.BLOCK_SIZE
LATENT, ROPE = _ascend.LATENT_DIM, _ascend.ROPE_DIM
HEADS = 8
TOLERANCES = {torch.float16: 3e-3, torch.bfloat16: 2e-2}


@pytest.fixture(scope="module")
def torch_npu() -> Iterator[ModuleType]:
    with installed() as module:
        yield module


def _filled_caches(dtype: torch.dtype, seq_lens: list[int], generator: torch.Generator):
    """Both sets' caches holding the same contexts; blocks handed out in reverse."""
    num_blocks = sum(-(-n // BLOCK) for n in seq_lens) + 1
    width = max(-(-n // BLOCK) for n in seq_lens)
    block_table = torch.zeros(len(seq_lens), width, dtype=torch.int32)
    free = list(range(num_blocks - 1, 0, -1))
    slots = []
    for req, n in enumerate(seq_lens):
        blocks = [free.pop(0) for _ in range(-(-n // BLOCK))]
        block_table[req, : len(blocks)] = torch.tensor(blocks, dtype=torch.int32)
        slots += [blocks[p // BLOCK] * BLOCK + p % BLOCK for p in range(n)]
    tokens = len(slots)
    kv_c = torch.randn(tokens, LATENT, generator=generator).to(dtype)
    k_pe = torch.randn(tokens, 1, ROPE, generator=generator).to(dtype)
    # Padding rows (slot -1) must leave both caches untouched.
    slot_mapping = torch.tensor([*slots, -1, -1], dtype=torch.long)
    kv_c = torch.cat([kv_c, torch.full((2, LATENT), 9.0, dtype=dtype)])
    k_pe = torch.cat([k_pe, torch.full((2, 1, ROPE), 9.0, dtype=dtype)])
    caches = {}
    for kernels in (ASCEND, REFERENCE):
        cache = torch.zeros(num_blocks, BLOCK, LATENT + ROPE, dtype=dtype)
        kernels.write_latent_cache(kv_c, k_pe, cache, slot_mapping)
        caches[kernels.name] = cache
    return caches, block_table


@pytest.mark.parametrize("dtype", list(TOLERANCES))
def test_cache_write_gather_and_decode_match_the_reference(
    torch_npu: ModuleType, dtype: torch.dtype
) -> None:
    generator = torch.Generator().manual_seed(0)
    seq_lens = [1, 130, 257]
    caches, block_table = _filled_caches(dtype, seq_lens, generator)
    requests = torch.repeat_interleave(torch.arange(len(seq_lens)), torch.tensor(seq_lens))
    positions = torch.cat([torch.arange(n) for n in seq_lens])
    gathered = {
        name: get_mla_kernels(name).gather_latent(cache, block_table, requests, positions)
        for name, cache in caches.items()
    }
    assert torch.equal(gathered["ascend"], gathered["reference"])
    assert not bool((gathered["ascend"] == 9.0).any()), "a padding row was written"
    zeroed = block_table[1, :2].tolist()
    for name, cache in caches.items():
        get_mla_kernels(name).zero_blocks(cache, zeroed)
        after = get_mla_kernels(name).gather_latent(cache, block_table, requests, positions)
        in_zeroed = requests == 1
        assert not bool(after[in_zeroed].any()), f"{name}: a zeroed block kept values"
        assert torch.equal(after[~in_zeroed], gathered[name][~in_zeroed])

    query = torch.randn(len(seq_lens), HEADS, LATENT + ROPE, generator=generator).to(dtype)
    lens = torch.tensor(seq_lens, dtype=torch.int32)
    outputs = {
        name: get_mla_kernels(name).decode_attention(
            query, cache, block_table, lens, scale=0.05, kv_lora_rank=LATENT,
            max_seq_len=max(seq_lens), host_seq_lens=seq_lens,
        )  # fmt: skip
        for name, cache in caches.items()
    }
    assert outputs["ascend"].shape == (len(seq_lens), HEADS, LATENT)
    torch.testing.assert_close(
        outputs["ascend"], outputs["reference"], atol=TOLERANCES[dtype], rtol=TOLERANCES[dtype]
    )


@pytest.mark.parametrize("causal", [True, False])
def test_prefill_matches_the_reference_in_bfloat16(torch_npu: ModuleType, causal: bool) -> None:
    """A fresh prefill and a chunk after a cached prefix (3 queries over 9 keys)."""
    generator = torch.Generator().manual_seed(1)
    query_start_loc, kv_start_loc = [0, 5, 8], [0, 5, 14]
    query = torch.randn(8, HEADS, 192, generator=generator, dtype=torch.float16)
    key = torch.randn(14, HEADS, 192, generator=generator, dtype=torch.float16)
    value = torch.randn(14, HEADS, 128, generator=generator, dtype=torch.float16)
    results = [
        kernels.prefill_attention(
            query, key, value, query_start_loc, kv_start_loc, scale=0.1, causal=causal,
            return_lse=True,
        )  # fmt: skip
        for kernels in (ASCEND, REFERENCE)
    ]
    (ascend, ascend_lse), (reference, reference_lse) = results
    assert ascend.dtype == torch.float16 and ascend_lse.shape == reference_lse.shape
    # The op computes in bfloat16 (its only dtype for TND without page attention).
    torch.testing.assert_close(ascend, reference, atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(ascend_lse, reference_lse, atol=3e-2, rtol=1e-2)


def _decode_args(**changes):
    args = dict(
        q_nope=torch.zeros(2, HEADS, LATENT, dtype=torch.float16),
        q_rope=torch.zeros(2, HEADS, ROPE, dtype=torch.float16),
        ctkv=torch.zeros(3, BLOCK, 1, LATENT, dtype=torch.float16),
        k_rope=torch.zeros(3, BLOCK, 1, ROPE, dtype=torch.float16),
        block_tables=torch.tensor([[1], [2]], dtype=torch.int32),
        context_lens=[3, 4],
        q_headnum=HEADS,
        qk_scale=0.1,
        kv_headnum=1,
    )
    args.update(changes)
    return args


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(ctkv=torch.zeros(3, 256, 1, LATENT, dtype=torch.float16),
              k_rope=torch.zeros(3, 256, 1, ROPE, dtype=torch.float16)),
         "block_size must be at most 128"),
        (dict(q_nope=torch.zeros(2, HEADS, 256, dtype=torch.float16)), "q_nope must be"),
        (dict(q_rope=torch.zeros(2, HEADS, 32, dtype=torch.float16)), "q_rope must be"),
        (dict(q_nope=torch.zeros(2, HEADS, LATENT)), "float16 or bfloat16"),
        (dict(block_tables=torch.tensor([[1], [2]])), "block_tables must be int32"),
        (dict(context_lens=torch.tensor([3, 4])), "list of ints"),
        (dict(context_lens=[3, 200]), "context_lens[1] = 200"),
        (dict(q_headnum=4), "q_headnum=4"),
    ],
    ids=["block-256", "latent-256", "rope-32", "float32", "int64-table", "tensor-lens",
         "beyond-blocks", "heads"],
)  # fmt: skip
def test_latent_attention_standin_rejects_what_the_real_op_does(
    torch_npu: ModuleType, changes: dict, message: str
) -> None:
    with pytest.raises(RuntimeError, match="npu_multi_head_latent_attention") as raised:
        torch_npu.atb.npu_multi_head_latent_attention(**_decode_args(**changes))
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("dtype", "heads", "qk_dim", "message"),
    [
        (torch.float16, 8, 192, "bfloat16 only"),
        (torch.bfloat16, 4, 192, r"N in \(8, 16, 32, 64, 128\)"),
        (torch.bfloat16, 8, 128, "query and key D 192"),
    ],
    ids=["float16", "4-heads", "qk-128"],
)
def test_unpaged_fused_attention_standin_rejects_what_the_real_op_does(
    torch_npu: ModuleType, dtype: torch.dtype, heads: int, qk_dim: int, message: str
) -> None:
    query = torch.zeros(4, heads, qk_dim, dtype=dtype)
    value = torch.zeros(4, heads, 128, dtype=dtype)
    with pytest.raises(RuntimeError, match=message):
        torch_npu.npu_fused_infer_attention_score(
            query, query, value, atten_mask=_ascend._causal_mask(query.device),
            actual_seq_lengths=[4], actual_seq_lengths_kv=[4], num_heads=heads,
            input_layout="TND", num_key_value_heads=heads, sparse_mode=3,
        )  # fmt: skip


def test_the_ascend_set_names_the_sizes_its_ops_reject() -> None:
    assert ASCEND.unsupported(
        kv_lora_rank=512, qk_rope_head_dim=64, qk_nope_head_dim=128, v_head_dim=128, num_heads=16
    ) == []
    features = ASCEND.unsupported(
        kv_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16, num_heads=4
    )
    assert features == [
        "kv_lora_rank 32 (npu_multi_head_latent_attention takes 512)",
        "qk_rope_head_dim 8 (npu_multi_head_latent_attention takes 64)",
        "qk_nope_head_dim 16 (the prefill op needs nope + rope = 192)",
        "v_head_dim 16 (the prefill op takes 128 or 192)",
        "4 attention heads per rank (the prefill op takes 8/16/32/64/128)",
    ]


def test_a_latent_cache_of_another_block_size_is_refused() -> None:
    with pytest.raises(ValueError, match="--block-size 128"):
        _ascend.split_latent_cache(torch.zeros(2, 16, LATENT + ROPE, dtype=torch.float16))
