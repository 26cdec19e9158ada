"""Stand-in ``npu_fusion_attention``: torch_npu's FlashAttention for dense (not paged)
batches, which transformers imports when it sees an NPU.

Computes the documented result for the layouts ``BSND``, ``BNSD``, ``BSH`` and
``SBH`` with an explicit mask (sparse_mode 0) or the compressed 2048x2048 causal
mask (2: top-left aligned, 3: bottom-right aligned), without dropout. Anything
else raises: RuntimeError for what the real op rejects, NotImplementedError for
what it accepts but the stand-in does not compute.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["npu_fusion_attention"]

OP = "npu_fusion_attention"
DTYPES = (torch.float16, torch.bfloat16, torch.float32)
LAYOUTS = ("BSND", "BNSD", "BSH", "SBH")
NO_BAND = 2147483647
CAUSAL_MASK_SIZE = 2048
SOFTMAX_STAT_WIDTH = 8
"""softmax_max and softmax_sum repeat each row's value 8 times, as the op returns them."""


def npu_fusion_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    head_num: int,
    input_layout: str,
    pse: Tensor | None = None,
    padding_mask: Tensor | None = None,
    atten_mask: Tensor | None = None,
    scale: float = 1.0,
    keep_prob: float = 1.0,
    pre_tockens: int = NO_BAND,
    next_tockens: int = NO_BAND,
    inner_precise: int = 0,
    prefix: Any = None,
    actual_seq_qlen: Any = None,
    actual_seq_kvlen: Any = None,
    sparse_mode: int = 0,
    gen_mask_parallel: bool = True,
    sync: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, int, int, int]:
    """Softmax(scale * Q K^T, masked) V for each batch and head.

    Returns ``(attention_out, softmax_max, softmax_sum, softmax_out, seed, offset,
    numels)``: the output in ``input_layout`` and dtype of ``query``; the float32
    row maximum and sum of exponentials ``[B, N, S, 8]``; an empty ``softmax_out``;
    and the dropout seed, offset and mask size (0: no dropout). ``atten_mask``
    (bool or uint8) is True/1 where a query must not see a key.
    """
    _check(query, key, value, head_num, input_layout, keep_prob, sparse_mode)
    unsupported = {
        "pse": pse is not None,
        "padding_mask": padding_mask is not None,
        "prefix": prefix is not None,
        "actual_seq_qlen": actual_seq_qlen is not None,
        "actual_seq_kvlen": actual_seq_kvlen is not None,
        "pre_tockens/next_tockens": (pre_tockens, next_tockens) != (NO_BAND, NO_BAND),
    }
    if any(unsupported.values()):
        names = ", ".join(name for name, used in unsupported.items() if used)
        raise NotImplementedError(f"{OP}: the stand-in does not compute {names}")
    head_size = _head_size(query, head_num, input_layout)
    q, k, v = (_to_bnsd(t, input_layout, head_size) for t in (query, key, value))
    if k.shape[1] == 0 or q.shape[1] % k.shape[1] or k.shape != v.shape[:3] + (k.shape[3],):
        raise RuntimeError(f"{OP}: key/value heads must divide query heads and match each other")
    group = q.shape[1] // k.shape[1]
    k = k.float().repeat_interleave(group, dim=1)
    v = v.float().repeat_interleave(group, dim=1)
    scores = torch.einsum("bnqd,bnkd->bnqk", q.float(), k) * scale
    hidden = _hidden(atten_mask, sparse_mode, scores.shape[-2], scores.shape[-1])
    if hidden is not None:
        scores = scores.masked_fill(hidden, float("-inf"))
    row_max = scores.amax(dim=-1, keepdim=True)
    exp = torch.exp(scores - row_max)
    row_sum = exp.sum(dim=-1, keepdim=True)
    out = torch.einsum("bnqk,bnkd->bnqd", exp / row_sum, v).to(query.dtype)
    stats = [s.expand(*s.shape[:-1], SOFTMAX_STAT_WIDTH).contiguous() for s in (row_max, row_sum)]
    return _from_bnsd(out, input_layout), stats[0], stats[1], query.new_empty(0), 0, 0, 0


def _check(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    head_num: int,
    layout: str,
    keep_prob: float,
    sparse_mode: int,
) -> None:
    if layout not in LAYOUTS:
        if layout in ("TND", "BNSD_BSND"):
            raise NotImplementedError(f"{OP}: the stand-in does not compute input_layout {layout}")
        raise RuntimeError(
            f"{OP}: input_layout must be one of {', '.join(LAYOUTS)}, got {layout!r}"
        )
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        if tensor.dtype not in DTYPES:
            raise RuntimeError(
                f"{OP}: {name} must be float16, bfloat16 or float32, got {tensor.dtype}"
            )
        if tensor.dim() != len(layout):
            raise RuntimeError(
                f"{OP}: {name} must be {len(layout)}-D {layout}, got {tuple(tensor.shape)}"
            )
    if not query.dtype == key.dtype == value.dtype:
        raise RuntimeError(f"{OP}: query, key and value must share a dtype")
    if head_num < 1:
        raise RuntimeError(f"{OP}: head_num must be positive, got {head_num}")
    if keep_prob != 1.0:
        raise NotImplementedError(f"{OP}: the stand-in does not compute dropout (keep_prob < 1)")
    if sparse_mode not in (0, 2, 3):
        raise NotImplementedError(f"{OP}: the stand-in does not compute sparse_mode {sparse_mode}")


def _to_bnsd(tensor: Tensor, layout: str, head_size: int) -> Tensor:
    """``[B, N, S, D]`` view of a tensor in ``layout`` (H = N * D for BSH and SBH)."""
    if layout == "BNSD":
        return tensor
    if layout == "BSND":
        return tensor.transpose(1, 2)
    batch_first = tensor if layout == "BSH" else tensor.transpose(0, 1)
    batch, seq, hidden = batch_first.shape
    return batch_first.reshape(batch, seq, hidden // head_size, head_size).transpose(1, 2)


def _head_size(query: Tensor, head_num: int, layout: str) -> int:
    if layout in ("BSND", "BNSD"):
        heads = query.shape[2] if layout == "BSND" else query.shape[1]
        if heads != head_num:
            raise RuntimeError(f"{OP}: head_num {head_num} but query has {heads} heads")
        return query.shape[-1]
    if query.shape[-1] % head_num:
        raise RuntimeError(
            f"{OP}: query's H {query.shape[-1]} is not a multiple of head_num {head_num}"
        )
    return query.shape[-1] // head_num


def _from_bnsd(tensor: Tensor, layout: str) -> Tensor:
    if layout == "BNSD":
        return tensor
    if layout == "BSND":
        return tensor.transpose(1, 2).contiguous()
    merged = tensor.transpose(1, 2).flatten(2)
    return merged if layout == "BSH" else merged.transpose(0, 1).contiguous()


def _hidden(atten_mask: Tensor | None, sparse_mode: int, q_len: int, kv_len: int) -> Tensor | None:
    if sparse_mode == 0:
        if atten_mask is None:
            return None
        if atten_mask.dtype not in (torch.bool, torch.uint8):
            raise RuntimeError(f"{OP}: atten_mask must be bool or uint8, got {atten_mask.dtype}")
        if tuple(atten_mask.shape[-2:]) != (q_len, kv_len) or atten_mask.dim() not in (2, 4):
            raise RuntimeError(
                f"{OP}: atten_mask must be [S, S_kv] or [B, 1 or N, S, S_kv] with "
                f"S={q_len}, S_kv={kv_len}; got {tuple(atten_mask.shape)}"
            )
        return atten_mask.bool()
    if atten_mask is None or tuple(atten_mask.shape) != (CAUSAL_MASK_SIZE, CAUSAL_MASK_SIZE):
        raise RuntimeError(f"{OP}: sparse_mode {sparse_mode} takes the 2048x2048 causal mask")
    offset = kv_len - q_len if sparse_mode == 3 else 0
    return torch.arange(kv_len)[None, :] > torch.arange(q_len)[:, None] + offset
