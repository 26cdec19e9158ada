"""The reference kernels' decode attention: one query token per request.

Requests are attended in groups of similar context length, each group padded only
to its own longest context (a batch's lengths often differ by 10x: padding them all
to the longest was most of the work). A group is three batched products over
``[requests * kv_heads, context, dim]``: the context gathered from the cache in
that order in one ``index_select``, the scores with the visibility mask added
(``baddbmm``), softmax, and the weighted values. The grouping and every index of a
step are planned once, from the step's lengths on the host, and shared by its
layers.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vllm_npu.attention.kernels._lengths import HostLengths

GROUP_OVERHEAD_ELEMENTS = 64 * 1024
"""What one more group costs (its few op calls, ~40 us on one core), counted in
gathered cache elements (~0.4 ns each): a group is split off where it spares the
requests after it more padding than this."""


def slot_view(kv_cache: Tensor) -> Tensor | None:
    """``kv_cache`` as ``[num_blocks * block_size, num_kv_heads, dim]`` (slot ``s`` at
    row ``s``) without a copy, where its blocks and offsets merge into one dim (vLLM's
    token-major layouts); else None."""
    num_blocks, num_kv_heads, block_size, dim = kv_cache.shape
    stride_block, stride_head, stride_pos, stride_dim = kv_cache.stride()
    if num_blocks > 1 and stride_block != block_size * stride_pos:
        return None
    return kv_cache.as_strided(
        (num_blocks * block_size, num_kv_heads, dim),
        (stride_pos, stride_head, stride_dim),
        kv_cache.storage_offset(),
    )


def _head_view(kv_cache: Tensor) -> Tensor | None:
    """``kv_cache`` as ``[num_slots * num_kv_heads, dim]`` (slot ``s``, head ``h`` at row
    ``s * num_kv_heads + h``) without a copy where its layout allows (vLLM's
    contiguous token-major one does); else None."""
    slots = slot_view(kv_cache)
    if slots is None:
        return None
    num_slots, num_kv_heads, dim = slots.shape
    stride_slot, stride_head, stride_dim = slots.stride()
    if num_kv_heads == 1:
        stride_head = stride_slot
    elif stride_slot != num_kv_heads * stride_head:
        return None
    return slots.as_strided((num_slots * num_kv_heads, dim), (stride_head, stride_dim))


def gather_slots(kv_cache: Tensor, slots: Tensor) -> Tensor:
    """The K and V rows at ``slots``: ``[len(slots), num_kv_heads, dim]``, a new tensor."""
    view = slot_view(kv_cache)
    if view is not None:
        return view.index_select(0, slots)
    block_size = kv_cache.shape[2]
    return kv_cache[slots // block_size, :, slots % block_size]


@dataclass(frozen=True)
class _Group:
    """Requests ``first .. first + num_reqs - 1`` of the plan's order, padded to one
    context length."""

    first: int
    num_reqs: int
    index: Tensor
    """What to gather: rows of the cache's head view (``[reqs, kv_heads, context]``
    flattened), or, where the layout has none, slots (``[reqs, context]``). Positions
    a query must not see read its last token, so every value read is one the cache
    holds (unwritten memory may be NaN, and 0 * NaN is NaN)."""
    mask: Tensor
    """``[reqs * kv_heads, 1, context]`` float32: 0 where the query sees the position,
    -inf where it does not."""


@dataclass(frozen=True)
class _DecodePlan:
    """The index work of a decode batch, which depends only on its lengths and block
    table: the same for every layer of a step."""

    order: Tensor
    """``[num_reqs]``: the query (and output) row of each request, groups in turn."""
    groups: tuple[_Group, ...]
    by_head_row: bool
    """Whether the groups' ``index`` names rows of the head view (else slots)."""


_PLANS: OrderedDict[tuple[Any, ...], tuple[HostLengths, _DecodePlan]] = OrderedDict()
"""Plans of the latest steps, keyed by the step's ``HostLengths`` (built once per step
by the metadata builder and shared by its layers), which each entry keeps alive."""
_MAX_PLANS = 16


def _split(
    context_lens: list[int], row_elements: int, max_reqs: Callable[[int], int]
) -> list[tuple[int, int]]:
    """Requests sorted by descending context length, cut into groups: ``(start, end)``
    ranges of that order. A cut before request ``j`` spares each request from ``j`` on
    the padding to its group's longest context; it is made where that outweighs
    ``GROUP_OVERHEAD_ELEMENTS``, or where the group would exceed ``max_reqs(length)``."""
    bounds, start, num_reqs = [], 0, len(context_lens)
    longest, limit = context_lens[0], max_reqs(context_lens[0])
    for j in range(1, num_reqs):
        spared = (num_reqs - j) * (longest - context_lens[j]) * row_elements
        if spared > GROUP_OVERHEAD_ELEMENTS or j - start >= limit:
            bounds.append((start, j))
            start, longest = j, context_lens[j]
            limit = max_reqs(longest)
    bounds.append((start, num_reqs))
    return bounds


def decode_plan(
    kv_cache: Tensor,
    block_table: Tensor,
    query_rows: Tensor,
    seq_lens: Tensor,
    *,
    num_heads: int,
    max_seq_len: int,
    sliding_window: int | None,
    budget_bytes: int,
    host_lengths: HostLengths | None,
) -> _DecodePlan:
    """The plan of this decode batch: from the cache of the step's ``host_lengths`` when
    a layer before made it, else new (and kept for the next layers).

    With ``host_lengths`` the requests are grouped by context length; without, they are
    read in order, in groups of as many as ``budget_bytes`` allows, each padded to the
    batch's longest context (``max_seq_len``, or the window)."""
    num_kv_heads, block_size, dim = kv_cache.shape[1], kv_cache.shape[2], kv_cache.shape[3]
    # Not the index tensors' addresses: paged_attention converts them to int64 anew in
    # each call. The step's HostLengths (kept alive by its entry) names the step; the
    # cache's strides name its layout (which decides ``by_head_row``).
    key = (
        id(host_lengths),
        tuple(block_table.shape),
        block_size,
        num_kv_heads,
        dim,
        num_heads,
        kv_cache.stride(),
        max_seq_len,
        sliding_window,
        budget_bytes,
    )
    if host_lengths is not None:
        cached = _PLANS.get(key)
        if cached is not None and cached[0] is host_lengths:
            _PLANS.move_to_end(key)
            return cached[1]
    by_head_row = _head_view(kv_cache) is not None

    def max_reqs(context_len: int) -> int:
        # float32 gathered K|V, then scores and probabilities.
        per_request = 4 * context_len * (num_kv_heads * dim + 2 * num_heads)
        return max(1, budget_bytes // per_request)

    # The index work is NumPy's, on the host: its small array ops cost less per call
    # than PyTorch's dispatch (plan of a 32-request step: 190 -> 146 us).
    window = sliding_window or max_seq_len
    num_reqs = seq_lens.shape[0]
    if host_lengths is not None:
        lengths_np = np.asarray(host_lengths.seq_lens, dtype=np.int64)
        query_rows_np = np.asarray(host_lengths.query_start_loc[:-1], dtype=np.int64)
        context_lens = np.minimum(lengths_np, window)
        order = np.argsort(-context_lens, kind="stable")
        bounds = _split(context_lens[order].tolist(), num_kv_heads * dim, max_reqs)
        lengths = [max(int(context_lens[order[start]]), 1) for start, _ in bounds]
    else:
        lengths_np = _host_array(seq_lens)
        query_rows_np = _host_array(query_rows)
        order = np.arange(num_reqs)
        context_len = min(max_seq_len, window)
        step = max_reqs(context_len)
        bounds = [(start, min(start + step, num_reqs)) for start in range(0, num_reqs, step)]
        lengths = [context_len] * len(bounds)
    # Every request's index and mask at the longest context, then each group's part.
    index, mask = _indices(
        _host_array(block_table)[order],
        lengths_np[order],
        context_len=lengths[0],
        block_size=block_size,
        num_kv_heads=num_kv_heads,
        by_head_row=by_head_row,
        sliding_window=sliding_window,
    )
    device = kv_cache.device

    def part(array: np.ndarray, start: int, end: int, context_len: int) -> Tensor:
        return torch.from_numpy(array[start:end, ..., :context_len].copy()).to(device)

    groups = tuple(
        _Group(
            first=start,
            num_reqs=end - start,
            index=part(index, start, end, context_len).flatten(),
            mask=part(mask, start, end, context_len).view(-1, 1, context_len),
        )
        for (start, end), context_len in zip(bounds, lengths, strict=True)
    )
    plan = _DecodePlan(
        order=torch.from_numpy(query_rows_np[order]).to(device),
        groups=groups,
        by_head_row=by_head_row,
    )
    if host_lengths is not None:
        _PLANS[key] = (host_lengths, plan)
        while len(_PLANS) > _MAX_PLANS:
            _PLANS.popitem(last=False)
    return plan


def _host_array(tensor: Tensor) -> np.ndarray:
    """``tensor``'s values as an int64 NumPy array on the host."""
    return tensor.detach().cpu().numpy().astype(np.int64)


def _indices(
    block_table: np.ndarray,
    seq_lens: np.ndarray,
    *,
    context_len: int,
    block_size: int,
    num_kv_heads: int,
    by_head_row: bool,
    sliding_window: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """What to gather for each request's first ``context_len`` context positions (see
    ``_Group.index``: ``[reqs, kv_heads, context]`` head-view rows if ``by_head_row``,
    else ``[reqs, context]`` slots) and its mask, ``[reqs, kv_heads, 1, context]``."""
    # A query sees the last ``sliding_window`` positions of its context (or all).
    last = (seq_lens - 1)[:, None]
    positions = np.arange(context_len)[None, :]
    if sliding_window is None:
        # Positions 0.. in order: each block's slots in a row, no lookup per position.
        num_blocks = -(-context_len // block_size)
        slots = block_table[:, :num_blocks, None] * block_size + np.arange(block_size)
        slots = slots.reshape(slots.shape[0], -1)[:, :context_len]
        visible = positions <= last
        last_slots = slots[np.arange(slots.shape[0]), np.maximum(last[:, 0], 0)]
        slots = np.where(visible, slots, last_slots[:, None])
    else:
        positions = positions + np.maximum(last - sliding_window + 1, 0)
        visible = positions <= last
        read = np.where(visible, positions, np.maximum(last, 0))
        slots = np.take_along_axis(block_table, read // block_size, axis=1) * block_size
        slots += read % block_size
    if by_head_row:
        slots = slots[:, None, :] * num_kv_heads + np.arange(num_kv_heads)[None, :, None]
    mask = np.where(visible, np.float32(0.0), np.float32("-inf"))[:, None, None, :]
    return slots, np.broadcast_to(mask, (mask.shape[0], num_kv_heads, 1, context_len))


def decode(
    query: Tensor,
    kv_cache: Tensor,
    plan: _DecodePlan,
    *,
    scale: float,
    logits_soft_cap: float | None,
    output: Tensor,
) -> None:
    """Attend each planned request's query row over its context and write its row of
    ``output`` (``[tokens, heads, head_size_v]``); in float32. Query head ``h`` reads KV
    head ``h // (num_heads // num_kv_heads)``."""
    num_kv_heads, dim = kv_cache.shape[1], kv_cache.shape[3]
    num_heads, head_size_k = query.shape[1], query.shape[2]
    group_heads = num_heads // num_kv_heads
    queries = query.index_select(0, plan.order).float()
    attended = queries.new_empty(queries.shape[0], num_heads, dim - head_size_k)
    head_rows = _head_view(kv_cache) if plan.by_head_row else None
    for group in plan.groups:
        rows = slice(group.first, group.first + group.num_reqs)
        batch = group.num_reqs * num_kv_heads
        if head_rows is not None:
            context = head_rows.index_select(0, group.index).view(batch, -1, dim)
        else:
            context = (
                gather_slots(kv_cache, group.index)
                .view(group.num_reqs, -1, num_kv_heads, dim)
                .transpose(1, 2)
                .reshape(batch, -1, dim)
            )
        context = context.float()
        keys, values = context[..., :head_size_k], context[..., head_size_k:]
        q = queries[rows].view(batch, group_heads, head_size_k)
        if logits_soft_cap:
            scores = torch.bmm(q, keys.transpose(1, 2)).mul_(scale)
            scores = torch.tanh(scores.div_(logits_soft_cap)).mul_(logits_soft_cap)
            scores.add_(group.mask)
        else:
            scores = torch.baddbmm(group.mask, q, keys.transpose(1, 2), alpha=scale)
        torch.bmm(
            torch.softmax(scores, dim=-1),
            values,
            out=attended[rows].view(batch, group_heads, -1),
        )
    output.index_copy_(0, plan.order, attended.to(output.dtype))
