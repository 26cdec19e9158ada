"""Ascend MLA kernels: the reference MLA ops' contract on torch_npu's MLA ops.

Latent cache: vLLM hands each MLA layer one contiguous buffer of shape
``[num_blocks, block_size, 576]``. These kernels hold it, as vllm-ascend splits each
MLA layer's buffer, as two contiguous caches over its memory: the first
``num_blocks * block_size * 512`` values are the latent cache ``ctkv``
``[num_blocks, block_size, 1, 512]``, the rest the rope key cache
``[num_blocks, block_size, 1, 64]`` (a row of the buffer is therefore not one token's
row: only these kernels read and write it).

- cache write: ``_npu_reshape_and_cache`` with the latent as key and the rope key as
  value (slot -1 rows left unwritten by the op);
- decode: ``torch_npu.atb.npu_multi_head_latent_attention`` (absorbed query split into
  its 512 latent and 64 rope parts, one query token per request, context lengths on
  the host);
- prefill: ``npu_fused_infer_attention_score`` in TND layout over the expanded keys and
  values (query and key dims 192, values 128), right-down causal, in bfloat16: the op
  takes nothing else there (float16 models are converted as vllm-ascend does);
- context gather for prefill: plain tensor indexing of the two caches.

``torch_npu`` is imported inside the ops, so this module imports on a host without it.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import Tensor

from vllm_npu.attention._torch_npu import torch_npu

BLOCK_SIZE = 128
"""The latent cache block size (npu_multi_head_latent_attention: at most 128, 128 advised)."""
DTYPES = (torch.float16, torch.bfloat16)
LATENT_DIM = 512
ROPE_DIM = 64
PREFILL_QK_DIM = 192
PREFILL_V_DIMS = (128, 192)
PREFILL_HEADS = (8, 16, 32, 64, 128)
# The ops' documented limits (torch-npu 2.13.0 wheel): npu_multi_head_latent_attention
# takes q_nope/ctkv of 512 and q_rope/k_rope of 64 (op_plugin/atb/_atb_api_docs.py);
# npu_fused_infer_attention_score in TND without page attention "Q_D、K_D等于192,
# V_D等于128/192", "N等于8/16/32/64/128", "数据类型仅支持BFLOAT16" (_op_plugin_docs.py).
PREFILL_DTYPE = torch.bfloat16
CAUSAL_MASK_SIZE = 2048
RIGHT_DOWN_CAUSAL = 3
NO_MASK = 0


def split_latent_cache(latent_cache: Tensor) -> tuple[Tensor, Tensor]:
    """The latent (``[num_blocks, block_size, 1, 512]``) and rope key (``[..., 64]``)
    caches over a layer's ``[num_blocks, block_size, 576]`` buffer (see the module
    docstring), each contiguous."""
    if (
        latent_cache.dim() != 3
        or latent_cache.shape[2] != LATENT_DIM + ROPE_DIM
        or latent_cache.shape[1] != BLOCK_SIZE
        or not latent_cache.is_contiguous()
    ):
        raise ValueError(
            "the ascend MLA kernels need a contiguous latent cache of shape (num_blocks, "
            f"{BLOCK_SIZE}, {LATENT_DIM + ROPE_DIM}), got shape {tuple(latent_cache.shape)}, "
            f"strides {latent_cache.stride()}; run with --block-size {BLOCK_SIZE}"
        )
    num_blocks, block_size = latent_cache.shape[:2]
    flat = latent_cache.view(-1)
    boundary = num_blocks * block_size * LATENT_DIM
    latent = flat[:boundary].view(num_blocks, block_size, 1, LATENT_DIM)
    rope = flat[boundary:].view(num_blocks, block_size, 1, ROPE_DIM)
    return latent, rope


def write_latent_cache(
    kv_c: Tensor, k_pe: Tensor, latent_cache: Tensor, slot_mapping: Tensor
) -> None:
    """Store each token's latent and rope key at its slot (see
    ``_reference.write_latent_cache``); padding rows (slot -1) are left to the op,
    which does not write them."""
    latent, rope = split_latent_cache(latent_cache)
    num_tokens = kv_c.shape[0]
    if slot_mapping.shape[0] < num_tokens:
        raise ValueError(
            f"slot_mapping has {slot_mapping.shape[0]} entries for {num_tokens} tokens"
        )
    if num_tokens == 0:
        return
    torch_npu()._npu_reshape_and_cache(
        key=kv_c.reshape(num_tokens, 1, LATENT_DIM).to(latent.dtype),
        value=k_pe.reshape(num_tokens, 1, ROPE_DIM).to(rope.dtype),
        key_cache=latent,
        value_cache=rope,
        slot_indices=slot_mapping[:num_tokens].to(torch.int32),
    )


def zero_blocks(latent_cache: Tensor, block_ids: list[int]) -> None:
    """Zero blocks ``block_ids`` of both caches over ``latent_cache``, in place."""
    ids = torch.tensor(block_ids, dtype=torch.long, device=latent_cache.device)
    for part in split_latent_cache(latent_cache):
        part[ids] = 0


def gather_latent(
    latent_cache: Tensor, block_table: Tensor, token_requests: Tensor, token_positions: Tensor
) -> Tensor:
    """The cached ``[num_tokens, 576]`` rows (latent then rope key) of context tokens
    (see ``_reference.gather_latent``)."""
    latent, rope = split_latent_cache(latent_cache)
    positions = token_positions.to(device=latent_cache.device, dtype=torch.long)
    requests = token_requests.to(device=latent_cache.device, dtype=torch.long)
    blocks = block_table.to(device=latent_cache.device, dtype=torch.long)[
        requests, positions // BLOCK_SIZE
    ]
    offsets = positions % BLOCK_SIZE
    return torch.cat([latent[blocks, offsets, 0], rope[blocks, offsets, 0]], dim=-1)


def decode_attention(
    query: Tensor,
    latent_cache: Tensor,
    block_table: Tensor,
    seq_lens: Tensor,
    *,
    scale: float,
    kv_lora_rank: int,
    max_seq_len: int,
    host_seq_lens: list[int] | None = None,
) -> Tensor:
    """Absorbed MLA decode (see ``_reference.decode_attention``) with
    ``npu_multi_head_latent_attention``. The op takes the context lengths as host
    ints: ``host_seq_lens`` (``seq_lens`` on the host, built once per step) is required;
    the device ``seq_lens`` is not read."""
    if host_seq_lens is None:
        raise ValueError(
            "the ascend MLA kernels need host_seq_lens (the decode requests' lengths on "
            "the host, from vLLM's CPU copy, built once per step)"
        )
    latent, rope = split_latent_cache(latent_cache)
    num_reqs, num_heads = query.shape[:2]
    if num_reqs == 0:
        return query.new_zeros(0, num_heads, kv_lora_rank)
    q_nope, q_rope = query.to(latent.dtype).split([LATENT_DIM, ROPE_DIM], dim=-1)
    attended = torch_npu().atb.npu_multi_head_latent_attention(
        q_nope.contiguous(),
        q_rope.contiguous(),
        latent,
        rope,
        block_table[:num_reqs].to(torch.int32),
        list(host_seq_lens),
        num_heads,
        float(scale),
        1,
    )
    return attended.to(query.dtype)


def prefill_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    query_start_loc: list[int],
    kv_start_loc: list[int],
    *,
    scale: float,
    causal: bool = True,
    return_lse: bool = False,
    output: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Ragged multi-head attention over expanded keys (see
    ``_reference.prefill_attention``), one ``npu_fused_infer_attention_score`` call in
    TND layout: right-down causal (``sparse_mode=3``) or over all keys (0). The op
    computes in bfloat16 here (its only dtype for this layout)."""
    num_heads, v_dim = value.shape[1], value.shape[2]
    if output is None:
        output = value.new_empty(query.shape[0], num_heads, v_dim)
    first_query, first_kv = query_start_loc[0], kv_start_loc[0]
    query_ends = [end - first_query for end in query_start_loc[1:]]
    kv_ends = [end - first_kv for end in kv_start_loc[1:]]
    rows = slice(first_query, query_start_loc[-1])
    attended, lse = torch_npu().npu_fused_infer_attention_score(
        query[rows].to(PREFILL_DTYPE).contiguous(),
        key[first_kv : kv_start_loc[-1]].to(PREFILL_DTYPE).contiguous(),
        value[first_kv : kv_start_loc[-1]].to(PREFILL_DTYPE).contiguous(),
        atten_mask=_causal_mask(query.device) if causal else None,
        actual_seq_lengths=query_ends,
        actual_seq_lengths_kv=kv_ends,
        num_heads=num_heads,
        scale=float(scale),
        input_layout="TND",
        num_key_value_heads=num_heads,
        sparse_mode=RIGHT_DOWN_CAUSAL if causal else NO_MASK,
        softmax_lse_flag=return_lse,
    )
    output[rows] = attended.to(output.dtype)
    if not return_lse:
        return output
    full_lse = torch.full(
        (num_heads, query.shape[0]), float("-inf"), dtype=torch.float32, device=query.device
    )
    full_lse[:, rows] = lse[..., 0].transpose(0, 1)
    return output, full_lse


@cache
def _causal_mask(device: torch.device) -> Tensor:
    """The 2048 x 2048 int8 mask, 1 above the diagonal: one per device, built once."""
    size = CAUSAL_MASK_SIZE
    return torch.ones(size, size, dtype=torch.int8, device=device).triu_(1)


class AscendMLAKernels:
    """The Ascend MLA ops as a kernel set (see ``vllm_npu.attention.mla_kernels``)."""

    name = "ascend"
    block_size: int | None = BLOCK_SIZE
    dtypes: tuple[torch.dtype, ...] = DTYPES
    write_latent_cache = staticmethod(write_latent_cache)
    zero_blocks = staticmethod(zero_blocks)
    gather_latent = staticmethod(gather_latent)
    decode_attention = staticmethod(decode_attention)
    prefill_attention = staticmethod(prefill_attention)

    @staticmethod
    def unsupported(
        *,
        kv_lora_rank: int,
        qk_rope_head_dim: int,
        qk_nope_head_dim: int | None = None,
        v_head_dim: int | None = None,
        num_heads: int | None = None,
    ) -> list[str]:
        """The sizes the ops reject (see the limits above); ``num_heads`` per rank."""
        features = []
        if kv_lora_rank != LATENT_DIM:
            features.append(
                f"kv_lora_rank {kv_lora_rank} (npu_multi_head_latent_attention takes "
                f"{LATENT_DIM})"
            )
        if qk_rope_head_dim != ROPE_DIM:
            features.append(
                f"qk_rope_head_dim {qk_rope_head_dim} (npu_multi_head_latent_attention "
                f"takes {ROPE_DIM})"
            )
        if qk_nope_head_dim is not None and qk_nope_head_dim + qk_rope_head_dim != PREFILL_QK_DIM:
            features.append(
                f"qk_nope_head_dim {qk_nope_head_dim} (the prefill op needs nope + rope = "
                f"{PREFILL_QK_DIM})"
            )
        if v_head_dim is not None and v_head_dim not in PREFILL_V_DIMS:
            features.append(
                f"v_head_dim {v_head_dim} (the prefill op takes "
                f"{' or '.join(map(str, PREFILL_V_DIMS))})"
            )
        if num_heads is not None and num_heads not in PREFILL_HEADS:
            features.append(
                f"{num_heads} attention heads per rank (the prefill op takes "
                f"{'/'.join(map(str, PREFILL_HEADS))})"
            )
        return features


ASCEND_MLA_KERNELS = AscendMLAKernels()
