"""Stand-in multi-head latent attention ops, computed in PyTorch with float32 accumulation:

- ``npu_multi_head_latent_attention`` (exported as ``torch_npu.atb.<op>``): absorbed MLA
  decode, one query token per request, over a paged latent cache (``ctkv``, 512 per
  token) and its rope cache (``k_rope``, 64 per token);
- ``unpaged_tnd_attention``: what ``npu_fused_infer_attention_score`` computes for
  ``input_layout="TND"`` without a ``block_table`` (MLA prefill: keys and values
  expanded per head, query and key dims 192, values 128 or 192, bfloat16 only).

The limits are those documented in the torch-npu 2.13.0 wheel (``_atb_api_docs.py``:
``npu_multi_head_latent_attention``, 参数说明 and 规格约束; ``_op_plugin_docs.py``:
``npu_fused_infer_attention_score``, "TND场景下query、key、value输入的综合限制").
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor

from torch_npu._attention_checks import (
    CAUSAL_MASK_SIZE,
    _check_causal_mask,
    _check_contiguous,
    _check_index_tensor,
    _check_rank,
    _check_same_dtype,
    _check_used_blocks,
    _fail,
)

__all__ = ["npu_multi_head_latent_attention"]

MLA = "npu_multi_head_latent_attention"
FUSED_ATTENTION = "npu_fused_infer_attention_score"
# npu_multi_head_latent_attention: q_nope/ctkv "512", q_rope/k_rope "64",
# "block_size <= 128", "batch <= 8192"; cache_mode 'krope_ctkv' (the default) is the
# float16/bf16 one ('int8_nzcache' is an int8 NZ cache the stand-in does not compute).
MLA_LATENT_DIM = 512
MLA_ROPE_DIM = 64
MLA_MAX_BLOCK_SIZE = 128
MLA_MAX_BATCH = 8192
# npu_fused_infer_attention_score, TND without page attention: "T小于等于65536",
# "N等于8/16/32/64/128, 且Q_N、K_N、V_N相等", "Q_D、K_D等于192, V_D等于128/192",
# "数据类型仅支持BFLOAT16", "sparse=0且不传mask, 或sparse=3且传入mask".
TND_MAX_TOKENS = 65536
TND_HEADS = (8, 16, 32, 64, 128)
TND_QK_DIM = 192
TND_V_DIMS = (128, 192)


def npu_multi_head_latent_attention(
    q_nope: Tensor,
    q_rope: Tensor,
    ctkv: Tensor,
    k_rope: Tensor,
    block_tables: Tensor,
    context_lens: Sequence[int],
    q_headnum: int,
    qk_scale: float,
    kv_headnum: int,
    *,
    mask: Tensor | None = None,
    mask_type: str | None = None,
    calc_type: str | None = None,
    cache_mode: str | None = None,
) -> Tensor:
    """MLA decode: request ``i``'s query (row ``i``) over the first ``context_lens[i]``
    tokens of its blocks ``block_tables[i]``.

    ``q_nope``: ``[num_tokens, num_heads, 512]`` (the no-position part, already absorbed
    into the latent space), ``q_rope``: ``[num_tokens, num_heads, 64]``; ``ctkv``:
    ``[num_blocks, block_size, kv_heads, 512]``, ``k_rope``: ``[num_blocks, block_size,
    kv_heads, 64]``, block_size at most 128; ``block_tables`` int32; ``context_lens`` a
    list of ints (host data). Score of key ``k``: ``(q_nope . ctkv_k + q_rope . k_rope_k)
    * qk_scale``; value: ``ctkv_k``. Returns ``[num_tokens, num_heads, 512]`` in
    ``q_rope``'s dtype (the real meta kernel's output).
    """
    _check_mla_options(mask, mask_type, calc_type, cache_mode)
    _check_mla_tensors(q_nope, q_rope, ctkv, k_rope, block_tables)
    num_tokens, num_heads = q_nope.shape[:2]
    if q_headnum != num_heads or kv_headnum != ctkv.shape[2]:
        _fail(
            MLA,
            f"q_headnum={q_headnum} and kv_headnum={kv_headnum} must be the heads of q_nope "
            f"({num_heads}) and ctkv ({ctkv.shape[2]})",
        )
    if kv_headnum < 1 or q_headnum % kv_headnum:
        _fail(MLA, f"q_headnum ({q_headnum}) must be a multiple of kv_headnum ({kv_headnum})")
    lengths = _lengths(MLA, "context_lens", context_lens)
    if num_tokens > MLA_MAX_BATCH or len(lengths) != num_tokens:
        _fail(
            MLA,
            f"one query token per request, at most {MLA_MAX_BATCH}: q_nope has {num_tokens} "
            f"rows, context_lens {len(lengths)} entries",
        )
    if block_tables.shape[0] < num_tokens:
        _fail(MLA, f"block_tables has {block_tables.shape[0]} rows for {num_tokens} requests")
    num_blocks, block_size = ctkv.shape[:2]
    capacity = block_tables.shape[1] * block_size
    for req, length in enumerate(lengths):
        if not 1 <= length <= capacity:
            _fail(
                MLA,
                f"context_lens[{req}] = {length} is outside [1, {capacity}] "
                "(block_tables width * block_size)",
            )
    _check_used_blocks(MLA, block_tables, lengths, block_size, num_blocks)
    output = q_nope.new_empty(num_tokens, num_heads, MLA_LATENT_DIM, dtype=q_rope.dtype)
    group = num_heads // kv_headnum
    for req, length in enumerate(lengths):
        blocks = block_tables[req, : -(-length // block_size)].long()
        latent = ctkv[blocks].flatten(0, 1)[:length].float().repeat_interleave(group, dim=1)
        rope = k_rope[blocks].flatten(0, 1)[:length].float().repeat_interleave(group, dim=1)
        scores = torch.einsum("hd,khd->hk", q_nope[req].float(), latent)
        scores += torch.einsum("hd,khd->hk", q_rope[req].float(), rope)
        probs = torch.softmax(scores * qk_scale, dim=-1)
        output[req] = torch.einsum("hk,khd->hd", probs, latent).to(output.dtype)
    return output


def _check_mla_options(
    mask: Tensor | None, mask_type: str | None, calc_type: str | None, cache_mode: str | None
) -> None:
    if mask is not None or mask_type not in (None, "undefined"):
        _fail(MLA, f"decode takes no mask (mask_type 'undefined'), got mask_type={mask_type!r}")
    if calc_type not in (None, "calc_type_undefined"):
        raise NotImplementedError(
            f"{MLA} stand-in: only calc_type 'calc_type_undefined' (decode) is implemented, "
            f"got {calc_type!r}"
        )
    if cache_mode not in (None, "krope_ctkv"):
        raise NotImplementedError(
            f"{MLA} stand-in: only cache_mode 'krope_ctkv' (float16/bfloat16 ND caches) is "
            f"implemented, got {cache_mode!r}"
        )


def _check_mla_tensors(
    q_nope: Tensor, q_rope: Tensor, ctkv: Tensor, k_rope: Tensor, block_tables: Tensor
) -> None:
    layouts = {
        "q_nope": (q_nope, 3, MLA_LATENT_DIM, "[num_tokens, num_heads, 512]"),
        "q_rope": (q_rope, 3, MLA_ROPE_DIM, "[num_tokens, num_heads, 64]"),
        "ctkv": (ctkv, 4, MLA_LATENT_DIM, "[num_blocks, block_size, kv_heads, 512]"),
        "k_rope": (k_rope, 4, MLA_ROPE_DIM, "[num_blocks, block_size, kv_heads, 64]"),
    }
    for name, (tensor, rank, dim, layout) in layouts.items():
        _check_rank(MLA, name, tensor, rank, layout)
        if tensor.shape[-1] != dim:
            _fail(MLA, f"{name} must be {layout}, got shape {tuple(tensor.shape)}")
        _check_contiguous(MLA, name, tensor)
    _check_same_dtype(MLA, q_nope=q_nope, q_rope=q_rope, ctkv=ctkv, k_rope=k_rope)
    if q_nope.shape[:2] != q_rope.shape[:2] or ctkv.shape[:3] != k_rope.shape[:3]:
        _fail(
            MLA,
            f"q_nope {tuple(q_nope.shape)} / q_rope {tuple(q_rope.shape)} and ctkv "
            f"{tuple(ctkv.shape)} / k_rope {tuple(k_rope.shape)} must agree but for the last dim",
        )
    if ctkv.shape[1] > MLA_MAX_BLOCK_SIZE:
        _fail(MLA, f"block_size must be at most {MLA_MAX_BLOCK_SIZE}, got {ctkv.shape[1]}")
    _check_index_tensor(MLA, "block_tables", block_tables, 2)


def _lengths(op: str, name: str, lengths: Sequence[int] | None) -> list[int]:
    if not isinstance(lengths, (list, tuple)) or not all(isinstance(n, int) for n in lengths):
        _fail(op, f"{name} must be a list of ints (host data), got {type(lengths).__name__}")
    return list(lengths)


def unpaged_tnd_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    *,
    atten_mask: Tensor | None,
    actual_seq_lengths: Sequence[int] | None,
    actual_seq_lengths_kv: Sequence[int] | None,
    num_heads: int,
    scale: float,
    num_key_value_heads: int,
    sparse_mode: int,
    softmax_lse_flag: bool,
) -> tuple[Tensor, Tensor]:
    """``npu_fused_infer_attention_score`` in TND layout without page attention.

    ``query``/``key``: ``[tokens, N, 192]``, ``value``: ``[tokens, N, 128 or 192]``, all
    bfloat16, N in 8/16/32/64/128 (the same for query, key and value). Request ``i``
    owns query rows ``actual_seq_lengths[i - 1]:actual_seq_lengths[i]`` and key/value
    rows ``actual_seq_lengths_kv[i - 1]:actual_seq_lengths_kv[i]`` (both cumulative).
    ``sparse_mode=3`` with the 2048 x 2048 upper-triangular mask: query ``q`` of ``n``
    over ``m`` keys sees keys ``k <= m - n + q`` (each request needs ``n <= m``);
    ``sparse_mode=0`` without a mask: every key. Returns ``(attention_out [tokens, N,
    value dim], softmax_lse [tokens, N, 1] float32)``, the lse empty (``[0]``) unless
    ``softmax_lse_flag``.
    """
    op = FUSED_ATTENTION
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        _check_rank(op, name, tensor, 3, "[T, N, D] (TND)")
        _check_contiguous(op, name, tensor)
    dtypes = {t.dtype for t in (query, key, value)}
    if dtypes != {torch.bfloat16}:
        _fail(op, f"TND without page attention takes bfloat16 only, got {sorted(map(str, dtypes))}")
    heads = {query.shape[1], key.shape[1], value.shape[1], num_heads}
    if num_key_value_heads not in (0, num_heads) or len(heads) != 1 or num_heads not in TND_HEADS:
        _fail(
            op,
            f"TND without page attention needs N in {TND_HEADS}, equal for query, key and "
            f"value and num_heads/num_key_value_heads; got query {tuple(query.shape)}, key "
            f"{tuple(key.shape)}, value {tuple(value.shape)}, num_heads={num_heads}, "
            f"num_key_value_heads={num_key_value_heads}",
        )
    qk_dims = (query.shape[2], key.shape[2])
    if qk_dims != (TND_QK_DIM, TND_QK_DIM) or value.shape[2] not in TND_V_DIMS:
        _fail(
            op,
            f"TND without page attention needs query and key D {TND_QK_DIM} and value D in "
            f"{TND_V_DIMS}; got {query.shape[2]}, {key.shape[2]}, {value.shape[2]}",
        )
    if query.shape[0] > TND_MAX_TOKENS or key.shape[0] != value.shape[0]:
        _fail(op, f"T at most {TND_MAX_TOKENS}, key and value of one T; got {query.shape[0]}")
    if sparse_mode == 3:
        _check_causal_mask(op, atten_mask)
    elif sparse_mode != 0 or atten_mask is not None:
        _fail(
            op,
            f"TND without page attention takes sparse_mode=0 without a mask or sparse_mode=3 "
            f"with the {CAUSAL_MASK_SIZE}x{CAUSAL_MASK_SIZE} mask, got sparse_mode={sparse_mode}",
        )
    query_ends = _lengths(op, "actual_seq_lengths", actual_seq_lengths)
    kv_ends = _lengths(op, "actual_seq_lengths_kv", actual_seq_lengths_kv)
    if len(query_ends) != len(kv_ends) or not query_ends:
        _fail(op, f"actual_seq_lengths {query_ends} and _kv {kv_ends}: one entry per request")
    if query_ends[-1] != query.shape[0] or kv_ends[-1] != key.shape[0]:
        _fail(
            op,
            f"the last of actual_seq_lengths / _kv must be query's {query.shape[0]} and key's "
            f"{key.shape[0]} rows, got {query_ends[-1]} and {kv_ends[-1]}",
        )
    output = query.new_empty(query.shape[0], num_heads, value.shape[2])
    lse = torch.zeros(query.shape[0], num_heads, 1, dtype=torch.float32)
    spans = zip(pairwise([0, *query_ends]), pairwise([0, *kv_ends]), strict=True)
    for req, ((q_start, q_end), (kv_start, kv_end)) in enumerate(spans):
        num_queries, num_keys = q_end - q_start, kv_end - kv_start
        if num_queries < 0 or num_keys < 0 or (sparse_mode == 3 and num_queries > num_keys):
            _fail(
                op,
                f"request {req} has {num_queries} queries over {num_keys} keys: the lengths "
                "must be non-decreasing, and with sparse_mode=3 no request has more queries "
                "than keys",
            )
        if num_queries == 0:
            continue
        scores = torch.einsum(
            "qhd,khd->hqk", query[q_start:q_end].float(), key[kv_start:kv_end].float()
        ) * scale
        if sparse_mode == 3:
            visible = torch.arange(num_keys - num_queries, num_keys)[:, None]
            scores = scores.masked_fill(torch.arange(num_keys)[None, :] > visible, float("-inf"))
        lse[q_start:q_end, :, 0] = torch.logsumexp(scores, dim=-1).transpose(0, 1)
        probs = torch.softmax(scores, dim=-1)
        attended = torch.einsum("hqk,khd->qhd", probs, value[kv_start:kv_end].float())
        output[q_start:q_end] = attended.to(output.dtype)
    return output, lse if softmax_lse_flag else torch.empty(0)
