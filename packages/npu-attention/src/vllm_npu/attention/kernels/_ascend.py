"""Ascend attention kernels: the reference ops' contract on torch_npu's fused ops.

KV cache layout: ``(2, num_blocks, 128, num_kv_heads, head_size)``, the key cache
then the value cache, each contiguous (what ``_npu_reshape_and_cache`` writes and
the attention ops read). Decode batches run ``_npu_paged_attention``; anything with
a request of several query tokens runs ``npu_fused_infer_attention_score`` (TND
layout, right-down causal mask). ``torch_npu`` is imported inside the ops, so this
module imports on a host without it.

No op here reads device data back to the host: the per-request lengths the ops plan
with come from ``HostLengths``, built once per step on the host.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import Tensor

from vllm_npu.attention._torch_npu import torch_npu
from vllm_npu.attention.kernels._lengths import HostLengths

BLOCK_SIZE = 128
"""The only KV block size these ops are used with (vllm-ascend's as well)."""
DTYPES = (torch.float16, torch.bfloat16)
CAUSAL_MASK_SIZE = 2048
"""Side of the upper-triangular mask the fused op takes with sparse_mode=3."""
RIGHT_DOWN_CAUSAL = 3
"""``sparse_mode``: query ``q`` of ``n`` sees keys ``k <= kv_len - n + q``."""
# The ops' documented limits on a model's attention shape (torch-npu 2.13.0 wheel):
# _npu_paged_attention, "head_size范围为（0, 256]" (op_plugin/atb/_atb_api_docs.py);
# npu_fused_infer_attention_score (_op_plugin_docs.py), float16/bfloat16 "D轴需16对齐",
# "num_heads与num_key_value_heads的比值不能大于64", and "KV_N*D超过65535" refused for
# the (blocknum, blocksize, H) cache view passed here.
MAX_HEAD_SIZE = 256
HEAD_SIZE_ALIGNMENT = 16
MAX_HEAD_RATIO = 64
MAX_KV_HIDDEN = 65535


def write_kv_cache(key: Tensor, value: Tensor, kv_cache: Tensor, slot_mapping: Tensor) -> None:
    """Store each token's K and V at its slot (see ``_reference.write_kv_cache``).
    The op leaves padding tokens (slot -1) unwritten, so they are passed as they are:
    filtering them out would read the mask back to the host."""
    key_cache, value_cache = _split_kv_cache(kv_cache)
    num_tokens = key.shape[0]
    if slot_mapping.shape[0] < num_tokens:
        raise ValueError(
            f"slot_mapping has {slot_mapping.shape[0]} entries for {num_tokens} tokens"
        )
    if num_tokens == 0:
        return
    torch_npu()._npu_reshape_and_cache(
        key=key.to(key_cache.dtype),
        value=value.to(value_cache.dtype),
        key_cache=key_cache,
        value_cache=value_cache,
        slot_indices=slot_mapping[:num_tokens].to(torch.int32),
    )


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
    """Causal attention over the paged KV cache (see ``_reference.paged_attention``).

    Sliding window and soft-cap are refused (``AscendKernels.unsupported``). The ops
    plan from per-request lengths on the host: ``host_lengths`` (the same numbers as
    ``query_start_loc`` / ``seq_lens``) is required, and the device tensors are not
    read. The maxima are not needed.
    """
    features = AscendKernels.unsupported(
        sliding_window=sliding_window, logits_soft_cap=logits_soft_cap
    )
    if features:
        raise NotImplementedError(
            f"the ascend attention kernels do not implement {', '.join(features)}"
        )
    if host_lengths is None:
        raise ValueError(
            "the ascend attention kernels need host_lengths (the requests' lengths on the "
            "host, HostLengths.from_host of vLLM's CPU copies, built once per step)"
        )
    key_cache, value_cache = _split_kv_cache(kv_cache)
    num_reqs = host_lengths.num_reqs
    first, last = host_lengths.query_start_loc[0], host_lengths.query_start_loc[-1]
    if num_reqs == 0 or last == first:
        return output
    block_table = block_table[:num_reqs].to(torch.int32)
    rows = slice(first, last)
    if all(query_len == 1 for query_len in host_lengths.query_lens):
        attended = _decode(
            query[rows], key_cache, value_cache, block_table, host_lengths.seq_lens_tensor, scale
        )
    else:
        query_ends = [end - first for end in host_lengths.query_start_loc[1:]]
        attended = _fused(
            query[rows],
            key_cache,
            value_cache,
            block_table,
            query_ends,
            list(host_lengths.seq_lens),
            scale,
        )
    output[rows] = attended
    return output


def _decode(
    query: Tensor,
    key_cache: Tensor,
    value_cache: Tensor,
    block_table: Tensor,
    context_lens: Tensor,
    scale: float,
) -> Tensor:
    """One query token per request: ``_npu_paged_attention``; ``context_lens`` is a
    host int32 tensor, as the op requires."""
    attended = query.new_empty(*query.shape[:2], value_cache.shape[-1])
    torch_npu()._npu_paged_attention(
        query=query.contiguous(),
        key_cache=key_cache,
        value_cache=value_cache,
        num_kv_heads=key_cache.shape[2],
        num_heads=query.shape[1],
        scale_value=scale,
        block_table=block_table,
        context_lens=context_lens,
        out=attended,
    )
    return attended


def _fused(
    query: Tensor,
    key_cache: Tensor,
    value_cache: Tensor,
    block_table: Tensor,
    query_ends: list[int],
    seq_lens: list[int],
    scale: float,
) -> Tensor:
    """Prefills, chunked prefills and mixed batches: the fused op, TND over the caches
    viewed as ``[num_blocks, block_size, num_kv_heads * head_size]``."""
    num_blocks, block_size, num_kv_heads = key_cache.shape[:3]
    attended, _ = torch_npu().npu_fused_infer_attention_score(
        query.contiguous(),
        key_cache.view(num_blocks, block_size, -1),
        value_cache.view(num_blocks, block_size, -1),
        atten_mask=_causal_mask(query.device),
        block_table=block_table,
        input_layout="TND",
        block_size=block_size,
        actual_seq_lengths=query_ends,
        actual_seq_lengths_kv=seq_lens,
        num_key_value_heads=num_kv_heads,
        num_heads=query.shape[1],
        scale=scale,
        sparse_mode=RIGHT_DOWN_CAUSAL,
    )
    return attended


@cache
def _causal_mask(device: torch.device) -> Tensor:
    """The 2048 x 2048 mask, 1 above the diagonal: one per device, built once."""
    size = CAUSAL_MASK_SIZE
    return torch.ones(size, size, dtype=torch.int8, device=device).triu_(1)


def _split_kv_cache(kv_cache: Tensor) -> tuple[Tensor, Tensor]:
    """The key and value caches of a layer's ``kv_cache``, checked for our layout."""
    if not _has_ascend_layout(kv_cache):
        raise ValueError(
            "the ascend attention kernels need a KV cache of shape (2, num_blocks, "
            f"{BLOCK_SIZE}, num_kv_heads, head_size) with contiguous K and V halves, got "
            f"shape {tuple(kv_cache.shape)}, strides {kv_cache.stride()}; allocate it with "
            f"AscendKernels.kv_cache_shape and a block size of {BLOCK_SIZE}"
        )
    return kv_cache[0], kv_cache[1]


def _has_ascend_layout(kv_cache: Tensor) -> bool:
    return (
        kv_cache.dim() == 5
        and kv_cache.shape[0] == 2
        and kv_cache.shape[2] == BLOCK_SIZE
        and kv_cache[0].is_contiguous()
        and kv_cache[1].is_contiguous()
    )


class AscendKernels:
    """The Ascend ops as a kernel set (see ``vllm_npu.attention.kernels``)."""

    name = "ascend"
    block_size: int | None = BLOCK_SIZE
    dtypes: tuple[torch.dtype, ...] = DTYPES
    write_kv_cache = staticmethod(write_kv_cache)
    paged_attention = staticmethod(paged_attention)

    @staticmethod
    def kv_cache_shape(
        num_blocks: int, block_size: int, num_kv_heads: int, head_size: int
    ) -> tuple[int, ...]:
        """``(2, num_blocks, block_size, num_kv_heads, head_size)``; block_size 128."""
        if block_size != BLOCK_SIZE:
            raise ValueError(
                f"the ascend attention kernels need block_size {BLOCK_SIZE}, got {block_size}; "
                f"run with --block-size {BLOCK_SIZE}"
            )
        return (2, num_blocks, block_size, num_kv_heads, head_size)

    @staticmethod
    def unsupported(
        *,
        sliding_window: int | None,
        logits_soft_cap: float | None,
        head_size: int | None = None,
        num_heads: int | None = None,
        num_kv_heads: int | None = None,
    ) -> list[str]:
        """Sliding window and logits soft-cap (the ops would need sparse_mode 4 and a
        soft-capping variant, not wired or tested here), and attention shapes beyond
        the ops' documented limits."""
        features = []
        if sliding_window is not None:
            features.append(f"sliding window ({sliding_window})")
        if logits_soft_cap:
            features.append(f"logits soft-cap ({logits_soft_cap})")
        if head_size is not None:
            if head_size > MAX_HEAD_SIZE:
                features.append(
                    f"head_size {head_size} (_npu_paged_attention takes at most {MAX_HEAD_SIZE})"
                )
            if head_size % HEAD_SIZE_ALIGNMENT:
                features.append(
                    f"head_size {head_size} (npu_fused_infer_attention_score needs a multiple "
                    f"of {HEAD_SIZE_ALIGNMENT})"
                )
        if num_heads and num_kv_heads:
            if num_heads // num_kv_heads > MAX_HEAD_RATIO:
                features.append(
                    f"{num_heads} query heads per {num_kv_heads} KV heads (a ratio of "
                    f"{num_heads // num_kv_heads}; npu_fused_infer_attention_score takes at "
                    f"most {MAX_HEAD_RATIO})"
                )
            if head_size is not None and num_kv_heads * head_size > MAX_KV_HIDDEN:
                features.append(
                    f"num_kv_heads * head_size = {num_kv_heads * head_size} per rank "
                    f"(npu_fused_infer_attention_score takes at most {MAX_KV_HIDDEN})"
                )
        return features


ASCEND_KERNELS = AscendKernels()
