"""The stand-in's attention ops against straightforward computations, and their
refusals of what the real ops refuse."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from vllm_npu.testing.standin import installed

BLOCK_SIZE = 16
"""The paged decode op's block size here (it takes multiples of 16 up to 128)."""
FUSED_BLOCK_SIZE = 128
"""The fused op with several query tokens per request takes multiples of 128 only."""
HEADS, KV_HEADS, HEAD_SIZE = 4, 2, 16
TOLERANCES = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@pytest.fixture(scope="module")
def torch_npu() -> Iterator[ModuleType]:
    with installed() as module:
        yield module


@dataclass
class PagedKV:
    """Per-request contexts stored in shuffled blocks; NaN in unwritten slots."""

    contexts: list[tuple[Tensor, Tensor]]  # per request: K, V [kv_len, kv_heads, d]
    key_cache: Tensor  # [num_blocks, block_size, kv_heads, d]
    value_cache: Tensor
    block_table: Tensor  # int32 [num_reqs, max_blocks]


def make_paged_kv(
    kv_lens: list[int],
    dtype: torch.dtype,
    kv_heads: int = KV_HEADS,
    seed: int = 0,
    block_size: int = BLOCK_SIZE,
) -> PagedKV:
    gen = torch.Generator().manual_seed(seed)
    blocks_needed = [-(-n // block_size) for n in kv_lens]
    num_blocks = sum(blocks_needed) + 3
    pool = torch.randperm(num_blocks, generator=gen).tolist()
    shape = (num_blocks, block_size, kv_heads, HEAD_SIZE)
    key_cache = torch.full(shape, math.nan, dtype=dtype)
    value_cache = torch.full(shape, math.nan, dtype=dtype)
    contexts, tables = [], []
    width = max(blocks_needed) + 1
    for kv_len, needed in zip(kv_lens, blocks_needed, strict=True):
        blocks = [pool.pop() for _ in range(needed)]
        tables.append(blocks + [num_blocks + 50] * (width - needed))  # stray entries unread
        k = torch.randn(kv_len, kv_heads, HEAD_SIZE, generator=gen).to(dtype)
        v = torch.randn(kv_len, kv_heads, HEAD_SIZE, generator=gen).to(dtype)
        for pos in range(kv_len):
            key_cache[blocks[pos // block_size], pos % block_size] = k[pos]
            value_cache[blocks[pos // block_size], pos % block_size] = v[pos]
        contexts.append((k, v))
    block_table = torch.tensor(tables, dtype=torch.int32)
    return PagedKV(contexts, key_cache, value_cache, block_table)


def sdpa(query: Tensor, keys: Tensor, values: Tensor, scale: float) -> Tensor:
    """Query rows ``[n, heads, d]`` each over all of ``keys [m, kv_heads, d]``."""
    out = F.scaled_dot_product_attention(
        query.float().transpose(0, 1),
        keys.float().transpose(0, 1),
        values.float().transpose(0, 1),
        scale=scale,
        enable_gqa=True,
    )
    return out.transpose(0, 1)


def causal_sdpa(query: Tensor, keys: Tensor, values: Tensor, scale: float) -> Tensor:
    """The last ``n`` positions of a context of ``m``: row ``q`` over keys ``0..m-n+q``."""
    first = keys.shape[0] - query.shape[0]
    rows = [sdpa(query[:0], keys, values, scale)]  # the shape of no rows
    rows += [
        sdpa(query[q : q + 1], keys[: first + q + 1], values[: first + q + 1], scale)
        for q in range(query.shape[0])
    ]
    return torch.cat(rows)


def causal_mask(dtype: torch.dtype = torch.int8) -> Tensor:
    return torch.triu(torch.ones(2048, 2048), diagonal=1).to(dtype)


def assert_close(actual: Tensor, expected: Tensor) -> None:
    tol = TOLERANCES[actual.dtype]
    torch.testing.assert_close(actual.float(), expected.float(), atol=tol, rtol=tol)


# _npu_reshape_and_cache


@dataclass
class CacheWrite:
    key: Tensor
    value: Tensor
    key_cache: Tensor
    value_cache: Tensor
    slot_indices: Tensor

    def kwargs(self) -> dict[str, Tensor]:
        return dict(vars(self))


def make_cache_write(dtype: torch.dtype = torch.float16) -> CacheWrite:
    gen = torch.Generator().manual_seed(1)
    key, value = torch.randn(2, 5, KV_HEADS, HEAD_SIZE, generator=gen).to(dtype)
    cache_shape = (4, BLOCK_SIZE, KV_HEADS, HEAD_SIZE)
    return CacheWrite(
        key=key,
        value=value,
        key_cache=torch.full(cache_shape, math.nan, dtype=dtype),
        value_cache=torch.full(cache_shape, math.nan, dtype=dtype),
        slot_indices=torch.tensor([17, 0, 63, 5, 40], dtype=torch.int32),
    )


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
def test_reshape_and_cache_writes_each_slot(torch_npu: ModuleType, dtype: torch.dtype) -> None:
    write = make_cache_write(dtype)
    assert torch_npu._npu_reshape_and_cache(**write.kwargs()) is None
    for cache, source in ((write.key_cache, write.key), (write.value_cache, write.value)):
        written = torch.zeros(cache.shape[:2], dtype=torch.bool)
        for token, slot in enumerate(write.slot_indices.tolist()):
            block, offset = divmod(slot, BLOCK_SIZE)
            assert torch.equal(cache[block, offset], source[token])
            written[block, offset] = True
        assert cache[~written].isnan().all(), "wrote outside the given slots"


def test_reshape_and_cache_reads_non_contiguous_tokens(torch_npu: ModuleType) -> None:
    write = make_cache_write()
    packed = torch.cat([write.key, write.value], dim=-1)  # K and V views of one tensor
    key, value = packed[..., :HEAD_SIZE], packed[..., HEAD_SIZE:]
    assert not key.is_contiguous()
    torch_npu._npu_reshape_and_cache(**replace(write, key=key, value=value).kwargs())
    assert torch.equal(write.key_cache[1, 1], write.key[0])
    assert torch.equal(write.value_cache[3, 15], write.value[2])


def test_reshape_and_cache_leaves_padding_slots_untouched(torch_npu: ModuleType) -> None:
    """Slot -1 rows are not written (the real op's behaviour, checked on hardware by
    vllm-ascend #11713): no need to filter padding before the call."""
    write = make_cache_write()
    write.slot_indices = torch.tensor([17, -1, 63, -1, 40], dtype=torch.int32)
    torch_npu._npu_reshape_and_cache(**write.kwargs())
    for cache, source in ((write.key_cache, write.key), (write.value_cache, write.value)):
        assert torch.equal(cache[1, 1], source[0])
        assert torch.equal(cache[3, 15], source[2])
        assert torch.equal(cache[2, 8], source[4])
        assert cache.isnan().flatten(0, 1).all(dim=(1, 2)).sum() == cache.shape[0] * 16 - 3


REJECTED_CACHE_WRITES: dict[str, tuple[Callable[[CacheWrite], CacheWrite], str]] = {
    "float32": (
        lambda w: replace(
            w,
            key=w.key.float(),
            value=w.value.float(),
            key_cache=w.key_cache.float(),
            value_cache=w.value_cache.float(),
        ),
        "key must be float16 or bfloat16, got torch.float32",
    ),
    "mixed-dtypes": (
        lambda w: replace(w, value_cache=w.value_cache.bfloat16()),
        "dtypes must match",
    ),
    "int64-slots": (lambda w: replace(w, slot_indices=w.slot_indices.long()), "must be int32"),
    "negative-slot": (
        lambda w: replace(w, slot_indices=torch.tensor([17, -2, 63, 5, 40], dtype=torch.int32)),
        r"slot_indices must lie in \[0, 64\) .*or be -1 for padding; got min -2",
    ),
    "slot-past-cache": (
        lambda w: replace(w, slot_indices=torch.tensor([17, 64, 63, 5, 40], dtype=torch.int32)),
        r"must lie in \[0, 64\)",
    ),
    "short-slots": (
        lambda w: replace(w, slot_indices=w.slot_indices[:4]),
        "one row per token",
    ),
    "2d-key": (lambda w: replace(w, key=w.key.flatten(1)), "key must be 3-D"),
    "3d-cache": (lambda w: replace(w, key_cache=w.key_cache.flatten(2)), "key_cache must be 4-D"),
    "non-contiguous-cache": (
        lambda w: replace(
            w, value_cache=w.value_cache.transpose(1, 2).contiguous().transpose(1, 2)
        ),
        "value_cache must be contiguous",
    ),
    "heads-mismatch": (
        lambda w: replace(w, key=w.key[:, :1], value=w.value[:, :1]),
        "does not fit key_cache",
    ),
}


@pytest.mark.parametrize("case", REJECTED_CACHE_WRITES)
def test_reshape_and_cache_rejects(torch_npu: ModuleType, case: str) -> None:
    change, message = REJECTED_CACHE_WRITES[case]
    write = change(make_cache_write())
    with pytest.raises(RuntimeError, match=f"_npu_reshape_and_cache: .*{message}"):
        torch_npu._npu_reshape_and_cache(**write.kwargs())


# _npu_paged_attention


def paged_attention_args(
    kv_lens: list[int], dtype: torch.dtype = torch.float16, kv_heads: int = KV_HEADS
) -> tuple[PagedKV, dict[str, Any]]:
    paged = make_paged_kv(kv_lens, dtype, kv_heads)
    query = torch.randn(len(kv_lens), HEADS, HEAD_SIZE, generator=torch.Generator().manual_seed(2))
    return paged, dict(
        query=query.to(dtype),
        key_cache=paged.key_cache,
        value_cache=paged.value_cache,
        num_kv_heads=kv_heads,
        num_heads=HEADS,
        scale_value=0.3,
        block_table=paged.block_table,
        context_lens=torch.tensor(kv_lens, dtype=torch.int32),
        out=torch.full((len(kv_lens), HEADS, HEAD_SIZE), math.nan, dtype=dtype),
    )


@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=["MHA", "GQA", "MQA"])
@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
def test_paged_attention_matches_sdpa(
    torch_npu: ModuleType, dtype: torch.dtype, kv_heads: int
) -> None:
    paged, args = paged_attention_args([1, 16, 17, 40, 5], dtype, kv_heads)
    assert torch_npu._npu_paged_attention(**args) is None
    for req, (k, v) in enumerate(paged.contexts):
        expected = sdpa(args["query"][req : req + 1], k, v, 0.3)
        assert_close(args["out"][req : req + 1], expected)


REJECTED_PAGED_ATTENTION: dict[str, tuple[Callable[[dict], dict], str]] = {
    "float32": (
        lambda a: {**a, **{n: a[n].float() for n in ("query", "key_cache", "value_cache", "out")}},
        "query must be float16 or bfloat16, got torch.float32",
    ),
    "out-dtype": (lambda a: {**a, "out": a["out"].bfloat16()}, "dtypes must match"),
    "int64-block-table": (
        lambda a: {**a, "block_table": a["block_table"].long()},
        "block_table must be int32, got torch.int64",
    ),
    "int64-context-lens": (
        lambda a: {**a, "context_lens": a["context_lens"].long()},
        "context_lens must be int32",
    ),
    "2d-query": (lambda a: {**a, "query": a["query"].flatten(1)}, "query must be 3-D"),
    "heads-not-multiple": (
        lambda a: {**a, "num_kv_heads": 3},
        r"num_heads \(4\) must be a multiple of the number of KV heads \(3\)",
    ),
    "num-heads-mismatch": (lambda a: {**a, "num_heads": 8}, "num_heads=8 but query has 4"),
    "non-contiguous-cache": (
        lambda a: {**a, "key_cache": a["key_cache"].transpose(0, 1).contiguous().transpose(0, 1)},
        "key_cache must be contiguous",
    ),
    "block-size-256": (
        lambda a: {
            **a,
            "key_cache": a["key_cache"].repeat(1, 16, 1, 1),
            "value_cache": a["value_cache"].repeat(1, 16, 1, 1),
        },
        "block_size must be a multiple of 16 and at most 128, got 256",
    ),
    "block-size-24": (
        lambda a: {
            **a,
            "key_cache": a["key_cache"].repeat(1, 3, 1, 1)[:, :24].contiguous(),
            "value_cache": a["value_cache"].repeat(1, 3, 1, 1)[:, :24].contiguous(),
        },
        "block_size must be a multiple of 16 and at most 128, got 24",
    ),
    "head-size-272": (
        lambda a: {
            **a,
            **{n: a[n].repeat(1, 1, 17).contiguous() for n in ("query", "out")},
            **{n: a[n].repeat(1, 1, 1, 17).contiguous() for n in ("key_cache", "value_cache")},
        },
        "head_size must be at most 256, got 272",
    ),
    "device-context-lens": (
        lambda a: {**a, "context_lens": _on_npu(a["context_lens"].clone())},
        r"context_lens must be a host \(CPU\) int32 tensor, got one in NPU memory",
    ),
    "one-query-per-request": (
        lambda a: {**a, "context_lens": a["context_lens"][:2]},
        "one query token per request",
    ),
    "zero-context": (
        lambda a: {**a, "context_lens": torch.tensor([0, 1, 1], dtype=torch.int32)},
        r"context_lens\[0\] = 0 is outside \[1, 32\]",
    ),
    "block-out-of-range": (
        lambda a: {**a, "block_table": a["block_table"] + 100},
        r"block_table\[0\] names blocks \[10\d\]",
    ),
    "out-shape": (
        lambda a: {**a, "out": a["out"][:, :2].contiguous()},
        r"out must have shape \(3, 4, 16\)",
    ),
}


def _on_npu(tensor: Tensor) -> Tensor:
    from torch_npu._device import to_npu

    return to_npu(tensor)


def test_paged_attention_takes_block_size_128_and_head_size_256(torch_npu: ModuleType) -> None:
    """The largest shapes the op documents are accepted (and computed)."""
    _, args = paged_attention_args([3, 16, 9])
    args = {
        **args,
        **{n: args[n].repeat(1, 1, 16).contiguous() for n in ("query", "out")},
        **{n: args[n].repeat(1, 8, 1, 16).contiguous() for n in ("key_cache", "value_cache")},
    }
    assert args["key_cache"].shape[1] == 128 and args["query"].shape[2] == 256
    torch_npu._npu_paged_attention(**args)
    assert not args["out"].isnan().any()


@pytest.mark.parametrize("case", REJECTED_PAGED_ATTENTION)
def test_paged_attention_rejects(torch_npu: ModuleType, case: str) -> None:
    change, message = REJECTED_PAGED_ATTENTION[case]
    _, args = paged_attention_args([3, 16, 9])
    with pytest.raises(RuntimeError, match=f"_npu_paged_attention: .*{message}"):
        torch_npu._npu_paged_attention(**change(args))


# npu_fused_infer_attention_score


def fused_args(
    reqs: list[tuple[int, int]], dtype: torch.dtype = torch.float16, kv_heads: int = KV_HEADS
) -> tuple[PagedKV, Tensor, dict[str, Any]]:
    """``reqs``: (query_len, kv_len) per request. Returns the paged KV, the query
    and the op's arguments."""
    paged = make_paged_kv(
        [kv_len for _, kv_len in reqs], dtype, kv_heads, block_size=FUSED_BLOCK_SIZE
    )
    num_tokens = sum(query_len for query_len, _ in reqs)
    gen = torch.Generator().manual_seed(3)
    query = torch.randn(num_tokens, HEADS, HEAD_SIZE, generator=gen).to(dtype)
    num_blocks = paged.key_cache.shape[0]
    ends = [sum(query_len for query_len, _ in reqs[: i + 1]) for i in range(len(reqs))]
    return (
        paged,
        query,
        dict(
            query=query,
            key=paged.key_cache.view(num_blocks, FUSED_BLOCK_SIZE, -1),
            value=paged.value_cache.view(num_blocks, FUSED_BLOCK_SIZE, -1),
            atten_mask=causal_mask(),
            block_table=paged.block_table,
            input_layout="TND",
            block_size=FUSED_BLOCK_SIZE,
            actual_seq_lengths=ends,
            actual_seq_lengths_kv=[kv_len for _, kv_len in reqs],
            num_key_value_heads=kv_heads,
            num_heads=HEADS,
            scale=0.3,
            sparse_mode=3,
        ),
    )


FUSED_SCENARIOS = {
    "prefill": [(5, 5), (16, 16), (1, 1), (130, 130)],
    "chunked-prefill": [(7, 140), (16, 20)],
    "mixed": [(1, 30), (9, 9), (0, 12), (4, 260), (1, 1)],
}


@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=["MHA", "GQA", "MQA"])
@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize("scenario", FUSED_SCENARIOS)
def test_fused_attention_matches_causal_sdpa(
    torch_npu: ModuleType, scenario: str, dtype: torch.dtype, kv_heads: int
) -> None:
    reqs = FUSED_SCENARIOS[scenario]
    paged, query, args = fused_args(reqs, dtype, kv_heads)
    attention_out, softmax_lse = torch_npu.npu_fused_infer_attention_score(**args)
    assert attention_out.shape == query.shape and attention_out.dtype == dtype
    assert softmax_lse.shape == (0,) and softmax_lse.dtype == torch.float32
    start = 0
    for (query_len, _), (k, v) in zip(reqs, paged.contexts, strict=True):
        rows = slice(start, start + query_len)
        assert_close(attention_out[rows], causal_sdpa(query[rows], k, v, 0.3))
        start += query_len


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.int8, torch.uint8], ids=str)
def test_fused_attention_softmax_lse(torch_npu: ModuleType, mask_dtype: torch.dtype) -> None:
    reqs = [(3, 10), (2, 2)]
    paged, query, args = fused_args(reqs)
    args["atten_mask"] = causal_mask(mask_dtype)
    _, softmax_lse = torch_npu.npu_fused_infer_attention_score(**args, softmax_lse_flag=True)
    assert softmax_lse.shape == (5, HEADS, 1) and softmax_lse.dtype == torch.float32
    start = 0
    for (query_len, kv_len), (k, _) in zip(reqs, paged.contexts, strict=True):
        for q in range(query_len):
            visible = k[: kv_len - query_len + q + 1].float().repeat_interleave(2, dim=1)
            scores = torch.einsum("hd,khd->hk", query[start + q].float(), visible) * 0.3
            torch.testing.assert_close(softmax_lse[start + q, :, 0], scores.logsumexp(-1))
        start += query_len


REJECTED_FUSED: dict[str, tuple[Callable[[dict], dict], type[Exception], str]] = {
    "float32": (
        lambda a: {**a, **{n: a[n].float() for n in ("query", "key", "value")}},
        RuntimeError,
        "query must be float16 or bfloat16, got torch.float32",
    ),
    "int64-block-table": (
        lambda a: {**a, "block_table": a["block_table"].long()},
        RuntimeError,
        "block_table must be int32",
    ),
    "bsh-layout": (
        lambda a: {**a, "input_layout": "BSH"},
        NotImplementedError,
        "only input_layout='TND' with sparse_mode=3 .* is implemented; got input_layout='BSH'",
    ),
    "sparse-mode-0": (
        lambda a: {**a, "sparse_mode": 0},
        NotImplementedError,
        "sparse_mode=0",
    ),
    "no-block-table": (  # TND without page attention: the MLA prefill form, bfloat16 only
        lambda a: {**a, "block_table": None},
        RuntimeError,
        "TND without page attention takes bfloat16 only",
    ),
    "no-mask": (
        lambda a: {**a, "atten_mask": None},
        RuntimeError,
        "sparse_mode=3 needs atten_mask",
    ),
    "small-mask": (
        lambda a: {**a, "atten_mask": a["atten_mask"][:1024, :1024]},
        RuntimeError,
        r"needs a 2048x2048 bool/int8/uint8 atten_mask, got \(1024, 1024\)",
    ),
    "float-mask": (
        lambda a: {**a, "atten_mask": a["atten_mask"].half()},
        RuntimeError,
        "got .*torch.float16",
    ),
    "lower-triangular-mask": (
        lambda a: {**a, "atten_mask": a["atten_mask"].T.contiguous()},
        RuntimeError,
        "atten_mask must be 1 above the diagonal",
    ),
    "tensor-lengths": (
        lambda a: {**a, "actual_seq_lengths": torch.tensor(a["actual_seq_lengths"])},
        RuntimeError,
        r"actual_seq_lengths as a list of ints \(use tensor.tolist\(\)\)",
    ),
    "lengths-not-ending-at-tokens": (
        lambda a: {**a, "actual_seq_lengths": [5, 9]},
        RuntimeError,
        "must equal the 10 rows of query",
    ),
    "more-queries-than-keys": (
        lambda a: {**a, "actual_seq_lengths_kv": [2, 20]},
        RuntimeError,
        "request 0 has 3 queries and 2 keys",
    ),
    "kv-longer-than-blocks": (
        lambda a: {**a, "actual_seq_lengths_kv": [8, 257]},
        RuntimeError,
        r"actual_seq_lengths_kv\[1\] = 257 is outside \[0, 256\]",
    ),
    "batch-mismatch": (
        lambda a: {**a, "block_table": a["block_table"][:1]},
        RuntimeError,
        "block_table has 1 rows but actual_seq_lengths has 2",
    ),
    "heads-not-multiple": (
        lambda a: {**a, "num_key_value_heads": 3},
        RuntimeError,
        r"num_heads \(4\) must be a multiple",
    ),
    "key-width": (
        lambda a: {**a, "num_key_value_heads": 1},
        RuntimeError,
        r"the last dim must be num_key_value_heads \(1\) \* head_size \(16\)",
    ),
    "block-size-mismatch": (
        lambda a: {**a, "block_size": 256},
        RuntimeError,
        "block_size=256 must equal dim 1 of key",
    ),
    "non-contiguous-query": (
        lambda a: {**a, "query": a["query"].transpose(0, 1).contiguous().transpose(0, 1)},
        RuntimeError,
        "query must be contiguous",
    ),
    "4d-key": (
        lambda a: {**a, "key": a["key"].unflatten(2, (KV_HEADS, HEAD_SIZE))},
        RuntimeError,
        "key must be 3-D",
    ),
}


@pytest.mark.parametrize("case", REJECTED_FUSED)
def test_fused_attention_rejects(torch_npu: ModuleType, case: str) -> None:
    change, error, message = REJECTED_FUSED[case]
    _, _, args = fused_args([(3, 8), (7, 20)])
    with pytest.raises(error, match=f"npu_fused_infer_attention_score.*{message}"):
        torch_npu.npu_fused_infer_attention_score(**change(args))


def test_ops_are_exported(torch_npu: ModuleType) -> None:
    from torch_npu import _attention

    for name in _attention.__all__:
        # exported wrapped by the call recorder (torch_npu._calls)
        assert inspect.unwrap(getattr(torch_npu, name)) is getattr(_attention, name)
    assert set(_attention.__all__) == {
        "_npu_paged_attention",
        "_npu_reshape_and_cache",
        "npu_fused_infer_attention_score",
    }


def _fused_with_cache_shape(
    reqs: list[tuple[int, int]], *, block_size: int, heads: int, kv_heads: int, head_size: int
) -> dict[str, Any]:
    """The fused op's arguments over a zero cache of these shapes (one block each)."""
    num_tokens = sum(query_len for query_len, _ in reqs)
    ends = [sum(query_len for query_len, _ in reqs[: i + 1]) for i in range(len(reqs))]
    cache = torch.zeros(len(reqs), block_size, kv_heads * head_size, dtype=torch.float16)
    return dict(
        query=torch.zeros(num_tokens, heads, head_size, dtype=torch.float16),
        key=cache,
        value=cache.clone(),
        atten_mask=causal_mask(),
        block_table=torch.arange(len(reqs), dtype=torch.int32)[:, None],
        input_layout="TND",
        block_size=block_size,
        actual_seq_lengths=ends,
        actual_seq_lengths_kv=[kv_len for _, kv_len in reqs],
        num_key_value_heads=kv_heads,
        num_heads=heads,
        scale=0.3,
        sparse_mode=3,
    )


HARDWARE_LIMITS_FUSED = {
    "block-16-several-queries": (
        dict(reqs=[(3, 8), (1, 5)], block_size=16, heads=4, kv_heads=2, head_size=16),
        r"several query tokens per request needs block_size a multiple of 128, at most 512; "
        "got 16",
    ),
    "block-192-several-queries": (
        dict(reqs=[(3, 8)], block_size=192, heads=4, kv_heads=2, head_size=16),
        "needs block_size a multiple of 128",
    ),
    "block-1024": (
        dict(reqs=[(3, 8)], block_size=1024, heads=4, kv_heads=2, head_size=16),
        "at most 512; got 1024",
    ),
    "block-24-one-query": (
        dict(reqs=[(1, 8), (1, 5)], block_size=24, heads=4, kv_heads=2, head_size=16),
        "one query token needs block_size a multiple of 16",
    ),
    "head-dim-24": (
        dict(reqs=[(3, 8)], block_size=128, heads=4, kv_heads=2, head_size=24),
        "head dim must be a multiple of 16 for float16/bfloat16, got 24",
    ),
    "head-ratio-128": (
        dict(reqs=[(3, 8)], block_size=128, heads=128, kv_heads=1, head_size=16),
        r"num_heads / num_key_value_heads must be at most 64, got 128 / 1",
    ),
    "kv-hidden-65536": (
        dict(reqs=[(2, 2)], block_size=128, heads=1, kv_heads=1, head_size=65536),
        "num_key_value_heads \\* head dim must be at most 65535",
    ),
}


@pytest.mark.parametrize("case", HARDWARE_LIMITS_FUSED)
def test_fused_attention_enforces_documented_limits(torch_npu: ModuleType, case: str) -> None:
    shapes, message = HARDWARE_LIMITS_FUSED[case]
    args = _fused_with_cache_shape(**shapes)
    with pytest.raises(RuntimeError, match=f"npu_fused_infer_attention_score: .*{message}"):
        torch_npu.npu_fused_infer_attention_score(**args)


@pytest.mark.parametrize(
    "shapes",
    [
        dict(reqs=[(1, 8), (1, 5)], block_size=16, heads=4, kv_heads=2, head_size=16),
        dict(reqs=[(3, 8)], block_size=512, heads=64, kv_heads=1, head_size=16),
        dict(reqs=[(3, 8)], block_size=128, heads=4, kv_heads=2, head_size=256),
    ],
    ids=["block-16-decode", "block-512-ratio-64", "head-dim-256"],
)
def test_fused_attention_accepts_the_documented_range(
    torch_npu: ModuleType, shapes: dict[str, Any]
) -> None:
    attention_out, _ = torch_npu.npu_fused_infer_attention_score(
        **_fused_with_cache_shape(**shapes)
    )
    assert not attention_out.isnan().any()
