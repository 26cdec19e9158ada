"""Stand-in attention ops: the paged KV-cache write (``_npu_reshape_and_cache``), paged
decode attention (``_npu_paged_attention``) and the fused inference attention
(``npu_fused_infer_attention_score``, TND layout over a paged KV cache, right-down
causal mask), computed in PyTorch with float32 accumulation.

Each op takes the real op's arguments under the real names and raises RuntimeError
for what the real op rejects (NotImplementedError, a RuntimeError, for what it
accepts but the stand-in does not compute).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor

from torch_npu._attention_checks import (
    _check_causal_mask,
    _check_contiguous,
    _check_heads,
    _check_index_tensor,
    _check_kv_lens,
    _check_rank,
    _check_same_dtype,
    _check_used_blocks,
    _fail,
)
from torch_npu._device import is_npu

__all__ = [
    "_npu_paged_attention",
    "_npu_reshape_and_cache",
    "npu_fused_infer_attention_score",
]

# Limits from the documentation in the torch-npu 2.13.0 wheel. ``_npu_paged_attention``
# is ATB's PagedAttention operation, documented there under its v2 entry point
# (op_plugin/atb/_atb_api_docs.py, ``_npu_paged_attention_v2``, 规格约束):
# "block_size %16 == 0", "block_size <= 128", "head_size范围为（0, 256]".
PAGED_ATTENTION_BLOCK_ALIGNMENT = 16
PAGED_ATTENTION_MAX_BLOCK_SIZE = 128
PAGED_ATTENTION_MAX_HEAD_SIZE = 256
# _op_plugin_docs.py, npu_fused_infer_attention_score: with page attention and query
# S >= 2, "block_size最小为128, 最大为512, 且要求是128的倍数"; with S == 1, block_size
# "最大不超过512 ... float16、bfloat16时需要16对齐"; float16/bfloat16 inputs need
# "D轴需16对齐"; "num_heads与num_key_value_heads的比值不能大于64"; a (blocknum,
# blocksize, H) KV cache with "KV_N*D超过65535 ... 会被拦截报错".
FUSED_MULTI_QUERY_BLOCK_ALIGNMENT = 128
FUSED_SINGLE_QUERY_BLOCK_ALIGNMENT = 16
FUSED_MAX_BLOCK_SIZE = 512
FUSED_HEAD_DIM_ALIGNMENT = 16
FUSED_MAX_HEAD_RATIO = 64
FUSED_MAX_KV_HIDDEN = 65535

RESHAPE_AND_CACHE = "_npu_reshape_and_cache"
PAGED_ATTENTION = "_npu_paged_attention"
FUSED_ATTENTION = "npu_fused_infer_attention_score"


def _npu_reshape_and_cache(
    key: Tensor, value: Tensor, key_cache: Tensor, value_cache: Tensor, slot_indices: Tensor
) -> None:
    """Store token ``t``'s K/V at slot ``slot_indices[t]`` of the caches, in place.

    ``key``/``value``: ``[num_tokens, num_kv_heads, head_size]``; caches:
    ``[num_blocks, block_size, num_kv_heads, head_size]``; ``slot_indices``: int32
    ``[num_tokens]``, slot ``s`` being block ``s // block_size``, offset
    ``s % block_size``. A token with slot -1 (padding) is not written, as the real
    op does (checked on hardware by vllm-ascend, vllm-project/vllm-ascend#11713);
    any other index must be in range.
    """
    _check_cache_write(key, value, key_cache, value_cache, slot_indices)
    slots = slot_indices.long()
    written = slots >= 0
    if not bool(written.all()):
        slots, key, value = slots[written], key[written], value[written]
    for source, cache_tensor in ((key, key_cache), (value, value_cache)):
        cache_tensor.view(-1, *cache_tensor.shape[2:]).index_copy_(0, slots, source)


def _npu_paged_attention(
    query: Tensor,
    key_cache: Tensor,
    value_cache: Tensor,
    num_kv_heads: int,
    num_heads: int,
    scale_value: float,
    block_table: Tensor,
    context_lens: Tensor,
    out: Tensor,
) -> None:
    """Decode attention: request ``i``'s one query token (row ``i`` of ``query``) over
    the first ``context_lens[i]`` tokens of its blocks ``block_table[i]``, into ``out``.

    ``query``/``out``: ``[num_reqs, num_heads, head_size]`` with head_size at most
    256; caches ``[num_blocks, block_size, num_kv_heads, head_size]`` with block_size
    a multiple of 16, at most 128; ``block_table`` int32 ``[num_reqs, max_blocks]``;
    ``context_lens`` int32 ``[num_reqs]`` in host memory (the op reads it on the host
    to plan the kernel). ``num_kv_heads`` 0 means ``num_heads``.
    """
    tensors = dict(query=query, key_cache=key_cache, value_cache=value_cache, out=out)
    _check_paged_attention_tensors(block_table, context_lens, **tensors)
    num_kv_heads = num_kv_heads or num_heads
    _check_paged_attention_shapes(num_kv_heads, num_heads, block_table, context_lens, **tensors)
    kv_lens = context_lens.tolist()
    op, (num_blocks, block_size) = PAGED_ATTENTION, key_cache.shape[:2]
    _check_kv_lens(op, "context_lens", kv_lens, block_table, block_size, minimum=1)
    _check_used_blocks(op, block_table, kv_lens, block_size, num_blocks)
    for req, kv_len in enumerate(kv_lens):
        keys = _gather_paged(key_cache, block_table[req], kv_len)
        values = _gather_paged(value_cache, block_table[req], kv_len)
        attended, _ = _attend(query[req : req + 1], keys, values, scale_value)
        out[req] = attended[0].to(out.dtype)


def npu_fused_infer_attention_score(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    *,
    atten_mask: Tensor | None = None,
    actual_seq_lengths: Sequence[int] | None = None,
    actual_seq_lengths_kv: Sequence[int] | None = None,
    block_table: Tensor | None = None,
    num_heads: int = 1,
    scale: float = 1.0,
    input_layout: str = "BSH",
    num_key_value_heads: int = 0,
    sparse_mode: int = 0,
    block_size: int = 0,
    softmax_lse_flag: bool = False,
) -> tuple[Tensor, Tensor]:
    """Fused attention; the stand-in computes ``input_layout="TND"`` over a paged KV
    cache with ``sparse_mode=3`` (right-down causal), which covers prefill and
    chunked prefill with a cached prefix, and TND without a ``block_table`` (MLA
    prefill over expanded keys: ``torch_npu._mla.unpaged_tnd_attention``).

    ``query``: ``[num_tokens, num_heads, head_size]``, request ``i`` owning rows
    ``actual_seq_lengths[i - 1]:actual_seq_lengths[i]`` (cumulative ends, the last
    equal to ``num_tokens``). ``key``/``value``: the caches viewed as
    ``[num_blocks, block_size, num_kv_heads * head_size]``; request ``i`` reads the
    first ``actual_seq_lengths_kv[i]`` tokens of blocks ``block_table[i]`` (int32).
    Query ``q`` of a request with ``n`` queries and ``m`` keys sees keys
    ``k <= m - n + q``; ``atten_mask`` must be the 2048 x 2048 upper-triangular mask
    (1/True above the diagonal). ``num_key_value_heads`` 0 means ``num_heads``.

    Returns ``(attention_out [num_tokens, num_heads, head_size_v], softmax_lse)``,
    the log-sum-exp ``[num_tokens, num_heads, 1]`` float32 with ``softmax_lse_flag``,
    else an empty float32 tensor (``[0]``, as the real meta kernel gives).
    """
    if input_layout == "TND" and block_table is None:
        from torch_npu._mla import unpaged_tnd_attention

        return unpaged_tnd_attention(
            query,
            key,
            value,
            atten_mask=atten_mask,
            actual_seq_lengths=actual_seq_lengths,
            actual_seq_lengths_kv=actual_seq_lengths_kv,
            num_heads=num_heads,
            scale=scale,
            num_key_value_heads=num_key_value_heads,
            sparse_mode=sparse_mode,
            softmax_lse_flag=softmax_lse_flag,
        )
    if input_layout != "TND" or sparse_mode != 3 or block_table is None:
        raise NotImplementedError(
            f"{FUSED_ATTENTION} stand-in: only input_layout='TND' with sparse_mode=3 over a "
            "paged KV cache (block_table given) is implemented; got "
            f"input_layout={input_layout!r}, sparse_mode={sparse_mode}, "
            f"block_table={'given' if block_table is not None else None}"
        )
    num_key_value_heads = num_key_value_heads or num_heads
    _check_fused_tensors(query, key, value, block_table, atten_mask)
    _check_fused_shapes(query, key, value, num_heads, num_key_value_heads, block_size)
    query_ends, kv_lens = _check_seq_lengths(
        query.shape[0], actual_seq_lengths, actual_seq_lengths_kv, block_table
    )
    _check_fused_limits(query, query_ends, num_heads, num_key_value_heads, block_size)
    op, num_blocks = FUSED_ATTENTION, key.shape[0]
    _check_kv_lens(op, "actual_seq_lengths_kv", kv_lens, block_table, block_size, minimum=0)
    _check_used_blocks(op, block_table, kv_lens, block_size, num_blocks)
    key_heads = key.view(num_blocks, block_size, num_key_value_heads, -1)
    value_heads = value.view(num_blocks, block_size, num_key_value_heads, -1)
    attention_out, softmax_lse = _attend_requests(
        query, key_heads, value_heads, block_table, query_ends, kv_lens, scale
    )
    return attention_out, softmax_lse if softmax_lse_flag else torch.empty(0)


def _attend_requests(
    query: Tensor,
    key_heads: Tensor,
    value_heads: Tensor,
    block_table: Tensor,
    query_ends: list[int],
    kv_lens: list[int],
    scale: float,
) -> tuple[Tensor, Tensor]:
    """Each request's query rows over its paged keys; (output, float32 log-sum-exp)."""
    num_tokens, num_heads = query.shape[:2]
    attention_out = query.new_empty(num_tokens, num_heads, value_heads.shape[3])
    softmax_lse = torch.zeros(num_tokens, num_heads, 1, dtype=torch.float32)
    start = 0
    for req, (end, kv_len) in enumerate(zip(query_ends, kv_lens, strict=True)):
        if end > start:
            keys = _gather_paged(key_heads, block_table[req], kv_len)
            values = _gather_paged(value_heads, block_table[req], kv_len)
            attended, lse = _attend(query[start:end], keys, values, scale)
            attention_out[start:end] = attended.to(query.dtype)
            softmax_lse[start:end, :, 0] = lse
        start = end
    return attention_out, softmax_lse


def _attend(query: Tensor, keys: Tensor, values: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """One request: its last ``len(query)`` positions over its ``len(keys)`` keys,
    bottom-right aligned causal. Query head ``h`` reads KV head ``h // group``.
    Returns float32 ``([q, heads, d_v], log-sum-exp [q, heads])``."""
    num_queries, num_heads = query.shape[:2]
    num_keys, num_kv_heads = keys.shape[:2]
    group = num_heads // num_kv_heads
    keys = keys.float().repeat_interleave(group, dim=1)
    values = values.float().repeat_interleave(group, dim=1)
    scores = torch.einsum("qhd,khd->hqk", query.float(), keys) * scale
    query_positions = torch.arange(num_keys - num_queries, num_keys)[:, None]
    hidden = torch.arange(num_keys)[None, :] > query_positions
    scores = scores.masked_fill(hidden, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.softmax(scores, dim=-1)
    return torch.einsum("hqk,khd->qhd", probs, values), lse.transpose(0, 1)


def _gather_paged(cache: Tensor, block_row: Tensor, length: int) -> Tensor:
    """The first ``length`` tokens stored in blocks ``block_row`` of
    ``cache [num_blocks, block_size, ...]``, as ``[length, ...]``."""
    block_size = cache.shape[1]
    used_blocks = block_row[: -(-length // block_size)].long()
    return cache[used_blocks].flatten(0, 1)[:length]


def _check_cache_write(
    key: Tensor, value: Tensor, key_cache: Tensor, value_cache: Tensor, slot_indices: Tensor
) -> None:
    op = RESHAPE_AND_CACHE
    for name, tensor in (("key", key), ("value", value)):
        _check_rank(op, name, tensor, 3, "[num_tokens, num_kv_heads, head_size]")
    for name, tensor in (("key_cache", key_cache), ("value_cache", value_cache)):
        _check_rank(op, name, tensor, 4, "[num_blocks, block_size, num_kv_heads, head_size]")
        _check_contiguous(op, name, tensor)
    _check_same_dtype(op, key=key, value=value, key_cache=key_cache, value_cache=value_cache)
    _check_index_tensor(op, "slot_indices", slot_indices, 1)
    num_tokens = key.shape[0]
    if value.shape[0] != num_tokens or slot_indices.shape[0] != num_tokens:
        _fail(
            op,
            f"key, value and slot_indices must have one row per token; got {key.shape[0]}, "
            f"{value.shape[0]} and {slot_indices.shape[0]}",
        )
    if key_cache.shape[:2] != value_cache.shape[:2]:
        _fail(
            op,
            f"key_cache {tuple(key_cache.shape)} and value_cache "
            f"{tuple(value_cache.shape)} differ in num_blocks or block_size",
        )
    for name, tensor, cache_tensor in (("key", key, key_cache), ("value", value, value_cache)):
        if tensor.shape[1:] != cache_tensor.shape[2:]:
            _fail(
                op,
                f"{name} {tuple(tensor.shape)} does not fit {name}_cache "
                f"{tuple(cache_tensor.shape)} (num_kv_heads and head_size must match)",
            )
    num_slots = key_cache.shape[0] * key_cache.shape[1]
    if num_tokens and not bool(((slot_indices >= -1) & (slot_indices < num_slots)).all()):
        _fail(
            op,
            f"slot_indices must lie in [0, {num_slots}) (num_blocks * block_size), or be -1 "
            f"for padding; got min {int(slot_indices.min())}, max {int(slot_indices.max())}",
        )


def _check_paged_attention_tensors(
    block_table: Tensor, context_lens: Tensor, **tensors: Tensor
) -> None:
    """Ranks, contiguity and dtypes of query, key_cache, value_cache and out."""
    op = PAGED_ATTENTION
    cache_layout = (4, "[num_blocks, block_size, num_kv_heads, head_size]")
    layouts = {
        "query": (3, "[num_reqs, num_heads, head_size]"),
        "key_cache": cache_layout,
        "value_cache": cache_layout,
        "out": (3, "[num_reqs, num_heads, head_size]"),
    }
    for name, tensor in tensors.items():
        _check_rank(op, name, tensor, *layouts[name])
        _check_contiguous(op, name, tensor)
    _check_same_dtype(op, **tensors)
    _check_index_tensor(op, "block_table", block_table, 2)
    _check_index_tensor(op, "context_lens", context_lens, 1)
    if is_npu(context_lens):
        _fail(
            op,
            "context_lens must be a host (CPU) int32 tensor, got one in NPU memory; pass "
            "the CPU copy of the sequence lengths",
        )


def _check_paged_attention_shapes(
    num_kv_heads: int,
    num_heads: int,
    block_table: Tensor,
    context_lens: Tensor,
    *,
    query: Tensor,
    key_cache: Tensor,
    value_cache: Tensor,
    out: Tensor,
) -> None:
    op = PAGED_ATTENTION
    _check_heads(op, query, num_heads, num_kv_heads)
    num_blocks, block_size = key_cache.shape[:2]
    if block_size % PAGED_ATTENTION_BLOCK_ALIGNMENT or block_size > PAGED_ATTENTION_MAX_BLOCK_SIZE:
        _fail(
            op,
            f"block_size must be a multiple of {PAGED_ATTENTION_BLOCK_ALIGNMENT} and at most "
            f"{PAGED_ATTENTION_MAX_BLOCK_SIZE}, got {block_size}",
        )
    head_size = max(query.shape[2], value_cache.shape[3])
    if head_size > PAGED_ATTENTION_MAX_HEAD_SIZE:
        _fail(op, f"head_size must be at most {PAGED_ATTENTION_MAX_HEAD_SIZE}, got {head_size}")
    cache_prefix = (num_blocks, block_size, num_kv_heads)
    if key_cache.shape[:3] != cache_prefix or value_cache.shape[:3] != cache_prefix:
        _fail(
            op,
            f"key_cache {tuple(key_cache.shape)} and value_cache "
            f"{tuple(value_cache.shape)} must both be [num_blocks, block_size, "
            f"num_kv_heads={num_kv_heads}, head_size]",
        )
    if key_cache.shape[3] != query.shape[2]:
        _fail(op, f"query head_size {query.shape[2]} != key_cache head_size {key_cache.shape[3]}")
    num_reqs = query.shape[0]
    expected_out = (num_reqs, num_heads, value_cache.shape[3])
    if tuple(out.shape) != expected_out:
        _fail(op, f"out must have shape {expected_out}, got {tuple(out.shape)}")
    if block_table.shape[0] != num_reqs or context_lens.shape[0] != num_reqs:
        _fail(
            op,
            f"one query token per request: query has {num_reqs} rows but block_table "
            f"has {block_table.shape[0]} and context_lens {context_lens.shape[0]}",
        )


def _check_fused_tensors(
    query: Tensor, key: Tensor, value: Tensor, block_table: Tensor, atten_mask: Tensor | None
) -> None:
    """Ranks, contiguity and dtypes of the fused op's tensors, and its mask."""
    op = FUSED_ATTENTION
    _check_rank(op, "query", query, 3, "[num_tokens, num_heads, head_size] (TND)")
    for name, tensor in (("key", key), ("value", value)):
        _check_rank(op, name, tensor, 3, "[num_blocks, block_size, num_kv_heads * head_size]")
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        _check_contiguous(op, name, tensor)
    _check_same_dtype(op, query=query, key=key, value=value)
    _check_index_tensor(op, "block_table", block_table, 2)
    _check_causal_mask(op, atten_mask)


def _check_fused_shapes(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    num_heads: int,
    num_key_value_heads: int,
    block_size: int,
) -> None:
    op = FUSED_ATTENTION
    _check_heads(op, query, num_heads, num_key_value_heads)
    if block_size != key.shape[1] or value.shape[:2] != key.shape[:2]:
        _fail(
            op,
            f"block_size={block_size} must equal dim 1 of key {tuple(key.shape)} and "
            f"value {tuple(value.shape)}, which must agree on num_blocks and block_size",
        )
    head_size = query.shape[2]
    if key.shape[2] != num_key_value_heads * head_size or value.shape[2] % num_key_value_heads:
        _fail(
            op,
            f"key {tuple(key.shape)} / value {tuple(value.shape)}: the last dim must be "
            f"num_key_value_heads ({num_key_value_heads}) * head_size ({head_size})",
        )


def _check_fused_limits(
    query: Tensor, query_ends: list[int], num_heads: int, num_kv_heads: int, block_size: int
) -> None:
    """The documented limits of paged attention (see the constants above)."""
    op = FUSED_ATTENTION
    head_size = query.shape[2]
    if head_size % FUSED_HEAD_DIM_ALIGNMENT:
        _fail(
            op,
            f"head dim must be a multiple of {FUSED_HEAD_DIM_ALIGNMENT} for float16/bfloat16, "
            f"got {head_size}",
        )
    if num_heads // num_kv_heads > FUSED_MAX_HEAD_RATIO:
        _fail(
            op,
            f"num_heads / num_key_value_heads must be at most {FUSED_MAX_HEAD_RATIO}, got "
            f"{num_heads} / {num_kv_heads}",
        )
    if num_kv_heads * head_size > FUSED_MAX_KV_HIDDEN:
        _fail(
            op,
            f"num_key_value_heads * head dim must be at most {FUSED_MAX_KV_HIDDEN} for a "
            f"(blocknum, blocksize, H) KV cache, got {num_kv_heads * head_size}",
        )
    query_lens = [end - start for start, end in pairwise([0, *query_ends])]
    several = max(query_lens, default=0) > 1
    alignment = FUSED_MULTI_QUERY_BLOCK_ALIGNMENT if several else FUSED_SINGLE_QUERY_BLOCK_ALIGNMENT
    if block_size % alignment or not 0 < block_size <= FUSED_MAX_BLOCK_SIZE:
        which = "with several query tokens per request" if several else "with one query token"
        _fail(
            op,
            f"paged attention {which} needs block_size a multiple of {alignment}, at most "
            f"{FUSED_MAX_BLOCK_SIZE}; got {block_size}",
        )


def _check_seq_lengths(
    num_tokens: int,
    actual_seq_lengths: Sequence[int] | None,
    actual_seq_lengths_kv: Sequence[int] | None,
    block_table: Tensor,
) -> tuple[list[int], list[int]]:
    """The per-request query end offsets and KV lengths, checked against each other."""
    op = FUSED_ATTENTION
    query_ends = _int_list("actual_seq_lengths", actual_seq_lengths)
    kv_lens = _int_list("actual_seq_lengths_kv", actual_seq_lengths_kv)
    num_reqs = block_table.shape[0]
    if len(query_ends) != num_reqs or len(kv_lens) != num_reqs:
        _fail(
            op,
            f"block_table has {num_reqs} rows but actual_seq_lengths has "
            f"{len(query_ends)} entries and actual_seq_lengths_kv {len(kv_lens)}",
        )
    if not query_ends or query_ends[-1] != num_tokens:
        _fail(
            op,
            f"the last of actual_seq_lengths (cumulative query ends) must equal the "
            f"{num_tokens} rows of query, got {query_ends}",
        )
    query_lens = [end - start for start, end in pairwise([0, *query_ends])]
    for req, (query_len, kv_len) in enumerate(zip(query_lens, kv_lens, strict=True)):
        if query_len < 0 or query_len > kv_len:
            _fail(
                op,
                f"request {req} has {query_len} queries and {kv_len} keys; "
                "actual_seq_lengths must be non-decreasing and each request's KV length "
                "must cover its queries",
            )
    return query_ends, kv_lens


def _int_list(name: str, lengths: Sequence[int] | None) -> list[int]:
    if not isinstance(lengths, (list, tuple)) or not all(isinstance(n, int) for n in lengths):
        _fail(
            FUSED_ATTENTION,
            f"TND needs {name} as a list of ints (use tensor.tolist()), got "
            f"{type(lengths).__name__}",
        )
    return list(lengths)
