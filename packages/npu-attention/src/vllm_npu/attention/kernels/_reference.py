"""Reference attention kernels in portable PyTorch: the host backend's ops and the
numerical ground truth for every other kernel set.

KV cache layout: ``[num_blocks, num_kv_heads, block_size, head_size_k + head_size_v]``
with K first in the last dim, any strides (it is a view of vLLM's flat buffer).
Slot ``s`` is block ``s // block_size``, offset ``s % block_size``; slot -1 is padding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vllm_npu.attention.kernels._lengths import HostLengths
from vllm_npu.attention.kernels._reference_decode import decode, decode_plan, slot_view

# Bound on the float32 working set of one batched attention step (scores, softmax
# probabilities and the gathered K/V). A batch estimated above it is processed in
# chunks of requests, each chunk still one batched computation.
CHUNK_BUDGET_BYTES = 256 * 1024 * 1024


def write_kv_cache(key: Tensor, value: Tensor, kv_cache: Tensor, slot_mapping: Tensor) -> None:
    """Store each token's K and V at its slot of ``kv_cache``, in place.

    ``key``/``value``: ``[num_tokens, num_kv_heads, head_size]``. Only the first
    ``num_tokens`` entries of ``slot_mapping`` (int32 or int64) are read; tokens
    whose slot is negative are padding and are not written.
    """
    num_tokens, head_size_k = key.shape[0], key.shape[-1]
    if slot_mapping.shape[0] < num_tokens:
        raise ValueError(
            f"slot_mapping has {slot_mapping.shape[0]} entries for {num_tokens} tokens"
        )
    slots = slot_mapping[:num_tokens].to(device=kv_cache.device, dtype=torch.long)
    if bool((slots < 0).any()):
        is_real = slots >= 0
        slots, key, value = slots[is_real], key[is_real], value[is_real]
    slots_view = slot_view(kv_cache)
    if slots_view is not None:  # one row per slot: K and V side by side, one copy
        slots_view.index_copy_(0, slots, torch.cat((key, value), dim=-1).to(kv_cache.dtype))
        return
    block_size = kv_cache.shape[2]
    block_ids, offsets = slots // block_size, slots % block_size
    kv_cache[block_ids, :, offsets, :head_size_k] = key.to(kv_cache.dtype)
    kv_cache[block_ids, :, offsets, head_size_k:] = value.to(kv_cache.dtype)


def paged_attention(
    query: Tensor,
    kv_cache: Tensor,
    block_table: Tensor,
    query_start_loc: Tensor,
    seq_lens: Tensor,
    *,
    scale: float,
    output: Tensor,
    sliding_window: int | None = None,
    logits_soft_cap: float | None = None,
    max_query_len: int | None = None,
    max_seq_len: int | None = None,
    host_lengths: HostLengths | None = None,
) -> Tensor:
    """Causal attention of a batch of requests over the paged KV cache.

    Request ``i`` owns query rows ``query_start_loc[i]:query_start_loc[i + 1]``:
    the last ``query_len`` positions of its context of ``seq_lens[i]`` tokens,
    whose K/V (new tokens included) are already in the blocks
    ``block_table[i]``. A query at position ``q`` sees keys ``k <= q`` and, with a
    sliding window ``W``, only ``k > q - W``. ``logits_soft_cap`` ``c`` maps the
    scaled scores to ``c * tanh(s / c)`` (None or 0 disables it). Query head ``h``
    reads KV head ``h // (num_heads // num_kv_heads)``.

    Writes ``[num_tokens, num_heads, head_size_v]`` into ``output`` (rows past
    ``query_start_loc[-1]`` are left as they are) and returns it. Computes in
    float32. A batch of one query per request takes the decode path
    (``_reference_decode``: with ``host_lengths``, requests grouped by context length,
    each group padded to its longest); any other is padded to ``max_query_len``
    queries and ``max_seq_len`` keys and computed together. Above ``CHUNK_BUDGET_BYTES``
    either is computed in chunks of requests. Passing both maxima avoids reading them
    back from the index tensors. ``host_lengths`` (the same lengths on the host, built
    once per step) also identifies the step: its layers share the decode plan.
    """
    if sliding_window is not None and sliding_window < 1:
        raise ValueError(f"sliding_window must be None or >= 1, got {sliding_window}")
    num_reqs = seq_lens.shape[0]
    if num_reqs == 0 or query.shape[0] == 0:
        return output
    if max_query_len is None:
        max_query_len = (
            max(host_lengths.query_lens)
            if host_lengths is not None
            else int((query_start_loc[1:] - query_start_loc[:-1]).max())
        )
    if max_seq_len is None:
        max_seq_len = (
            max(host_lengths.seq_lens) if host_lengths is not None else int(seq_lens.max())
        )
    if max_query_len == 0 or max_seq_len == 0:
        return output

    num_heads, num_kv_heads = query.shape[1], kv_cache.shape[1]
    if max_query_len == 1 and _num_query_tokens(query_start_loc, host_lengths) == num_reqs:
        # With the step's host lengths, a plan made by an earlier layer is found
        # without touching the index tensors.
        plan = decode_plan(
            kv_cache,
            block_table,
            query_start_loc[:-1],
            seq_lens,
            num_heads=num_heads,
            max_seq_len=max_seq_len,
            sliding_window=sliding_window,
            budget_bytes=CHUNK_BUDGET_BYTES,
            host_lengths=host_lengths,
        )
        decode(query, kv_cache, plan, scale=scale, logits_soft_cap=logits_soft_cap, output=output)
        return output
    device = query.device
    query_start_loc = query_start_loc.to(device=device, dtype=torch.long)
    seq_lens = seq_lens.to(device=device, dtype=torch.long)
    block_table = block_table.to(device=device, dtype=torch.long)
    query_lens = query_start_loc[1:] - query_start_loc[:-1]
    bytes_per_request = (
        4 * max_seq_len * (2 * num_heads * max_query_len + num_kv_heads * kv_cache.shape[3])
    )
    reqs_per_chunk = max(1, CHUNK_BUDGET_BYTES // bytes_per_request)
    for first in range(0, num_reqs, reqs_per_chunk):
        chunk = slice(first, min(first + reqs_per_chunk, num_reqs))
        context = _gather_context(kv_cache, block_table[chunk], seq_lens[chunk], max_seq_len)
        chunk_output = _attend(
            query,
            context,
            query_start_loc[chunk],
            query_lens[chunk],
            seq_lens[chunk],
            max_query_len=max_query_len,
            scale=scale,
            sliding_window=sliding_window,
            logits_soft_cap=logits_soft_cap,
        )
        _scatter_rows(chunk_output, query_start_loc[first : chunk.stop + 1], output)
    return output


def _num_query_tokens(query_start_loc: Tensor, host_lengths: HostLengths | None) -> int:
    if host_lengths is not None:
        return host_lengths.query_start_loc[-1] - host_lengths.query_start_loc[0]
    return int(query_start_loc[-1] - query_start_loc[0])


def _gather_context(
    kv_cache: Tensor, block_table: Tensor, seq_lens: Tensor, max_seq_len: int
) -> Tensor:
    """K and V of context positions ``0..max_seq_len-1`` of each request.

    Returns float32 ``[num_kv_heads, num_reqs, max_seq_len, kv_dim]`` (KV heads
    first, so the gather lands in that order without a second copy), zero at
    positions past the request's ``seq_len``: unwritten cache memory may hold NaN,
    and a masked-out probability of 0 times NaN is still NaN.
    """
    block_size = kv_cache.shape[2]
    blocks = block_table[:, : -(-max_seq_len // block_size)]
    # Entries past a request's last block may be stale or padding: read block 0
    # there instead so the gather stays in range; those positions are zeroed.
    num_used_blocks = (seq_lens + block_size - 1) // block_size
    block_cols = torch.arange(blocks.shape[1], device=blocks.device)
    blocks = torch.where(block_cols < num_used_blocks[:, None], blocks, 0)
    # Whole blocks first (index_select copies them in one pass, whatever the
    # cache's strides), then [kv_heads, reqs, positions, dim]; a fresh tensor.
    num_reqs, num_blocks = blocks.shape
    num_kv_heads, dim = kv_cache.shape[1], kv_cache.shape[3]
    context = (
        kv_cache.index_select(0, blocks.flatten())
        .view(num_reqs, num_blocks, num_kv_heads, block_size, dim)
        .permute(2, 0, 1, 3, 4)
        .reshape(num_kv_heads, num_reqs, num_blocks * block_size, dim)
    )
    context = context[:, :, :max_seq_len].float()
    positions = torch.arange(context.shape[2], device=context.device)
    in_context = positions < seq_lens[:, None]
    return context.masked_fill_(~in_context[None, :, :, None], 0.0)


def _attend(
    query: Tensor,
    context: Tensor,
    query_start_loc: Tensor,
    query_lens: Tensor,
    seq_lens: Tensor,
    *,
    max_query_len: int,
    scale: float,
    sliding_window: int | None,
    logits_soft_cap: float | None,
) -> Tensor:
    """Attention of each request's queries, padded to ``max_query_len``, over its
    ``context``; returns float32 ``[num_reqs, max_query_len, num_heads, head_size_v]``.
    Rows past a request's query length are garbage (possibly NaN)."""
    num_kv_heads, num_reqs, ctx_len, _ = context.shape
    num_heads, head_size_k = query.shape[1], query.shape[2]
    group = num_heads // num_kv_heads
    query_offsets = torch.arange(max_query_len, device=query.device)
    token_ids = query_start_loc[:, None] + query_offsets
    padded_query = query[token_ids.clamp(max=query.shape[0] - 1)].float()
    # [reqs, q, heads, d] -> [kv_heads, reqs, group * q, d]: one matmul per KV head.
    padded_query = (
        padded_query.view(num_reqs, max_query_len, num_kv_heads, group, head_size_k)
        .permute(2, 0, 3, 1, 4)
        .reshape(num_kv_heads, num_reqs, -1, head_size_k)
    )
    keys, values = context[..., :head_size_k], context[..., head_size_k:]

    scores = torch.matmul(padded_query, keys.transpose(-1, -2)).mul_(scale)
    if logits_soft_cap:
        scores = torch.tanh(scores / logits_soft_cap).mul_(logits_soft_cap)

    # Causality also hides positions past seq_len from every real query row.
    query_positions = (seq_lens - query_lens)[:, None, None] + query_offsets[:, None]
    key_positions = torch.arange(ctx_len, device=query.device)
    visible = key_positions <= query_positions
    if sliding_window is not None:
        visible &= key_positions > query_positions - sliding_window
    scores = scores.view(num_kv_heads, num_reqs, group, max_query_len, ctx_len)
    scores.masked_fill_(~visible[None, :, None], float("-inf"))
    probs = torch.softmax(scores, dim=-1).view(num_kv_heads, num_reqs, -1, ctx_len)

    attended = torch.matmul(probs, values)  # [kv_heads, reqs, group * q, d_v]
    return (
        attended.view(num_kv_heads, num_reqs, group, max_query_len, -1)
        .permute(1, 3, 0, 2, 4)
        .reshape(num_reqs, max_query_len, num_heads, -1)
    )


def _scatter_rows(padded_output: Tensor, query_bounds: Tensor, output: Tensor) -> None:
    """Copy each request's real rows of ``padded_output`` to its token rows of
    ``output``; ``query_bounds`` are the chunk's ``query_start_loc`` entries
    (one more than its requests). Other rows of ``output`` keep their values.

    Works per output token (which request, which offset) rather than with a
    boolean mask, so it needs no host sync on the number of tokens.
    """
    num_reqs, max_query_len = padded_output.shape[:2]
    token_ids = torch.arange(output.shape[0], device=output.device)
    req_of_token = torch.searchsorted(query_bounds[1:], token_ids, right=True)
    req_of_token = req_of_token.clamp(max=num_reqs - 1)
    rows = req_of_token * max_query_len + token_ids - query_bounds[req_of_token]
    rows = rows.clamp(0, num_reqs * max_query_len - 1)
    in_chunk = (token_ids >= query_bounds[0]) & (token_ids < query_bounds[-1])
    gathered = padded_output.flatten(0, 1)[rows].to(output.dtype)
    output.copy_(torch.where(in_chunk[:, None, None], gathered, output))


class ReferenceKernels:
    """The reference ops as a kernel set (see ``vllm_npu.attention.kernels``)."""

    name = "reference"
    block_size: int | None = None
    dtypes: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32)
    write_kv_cache = staticmethod(write_kv_cache)
    paged_attention = staticmethod(paged_attention)

    @staticmethod
    def kv_cache_shape(
        num_blocks: int, block_size: int, num_kv_heads: int, head_size: int
    ) -> tuple[int, ...] | None:
        """None: the ops read vLLM's own view of the cache, whatever its strides."""
        return None

    @staticmethod
    def unsupported(
        *,
        sliding_window: int | None,
        logits_soft_cap: float | None,
        head_size: int | None = None,
        num_heads: int | None = None,
        num_kv_heads: int | None = None,
    ) -> list[str]:
        """None: the reference ops implement every feature of the contract, any shape."""
        return []


REFERENCE_KERNELS = ReferenceKernels()
