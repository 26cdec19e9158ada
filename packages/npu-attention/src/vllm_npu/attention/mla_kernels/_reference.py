"""Reference MLA kernels in portable PyTorch: the host backend's ops and the numerical
ground truth for every other MLA kernel set.

Latent cache layout: ``[num_blocks, block_size, kv_lora_rank + rope_dim]``, each token's
normalised latent ``kv_c`` then its rotated ``k_pe``, any strides. Slot ``s`` is block
``s // block_size``, offset ``s % block_size``; slot -1 is padding.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Bound on the float32 working set of one batched decode step (the gathered latent
# context and the scores); a batch estimated above it is attended in chunks of requests.
CHUNK_BUDGET_BYTES = 256 * 1024 * 1024


def write_latent_cache(
    kv_c: Tensor, k_pe: Tensor, latent_cache: Tensor, slot_mapping: Tensor
) -> None:
    """Store each token's latent ``kv_c`` (``[num_tokens, kv_lora_rank]``) and rope key
    ``k_pe`` (``[num_tokens, rope_dim]`` or ``[num_tokens, 1, rope_dim]``) at its slot
    of ``latent_cache``, in place. Only the first ``num_tokens`` slots are read;
    tokens with a negative slot are padding and are not written."""
    num_tokens, kv_lora_rank = kv_c.shape
    if slot_mapping.shape[0] < num_tokens:
        raise ValueError(
            f"slot_mapping has {slot_mapping.shape[0]} entries for {num_tokens} tokens"
        )
    k_pe = k_pe.reshape(num_tokens, -1)
    if kv_lora_rank + k_pe.shape[1] != latent_cache.shape[2]:
        raise ValueError(
            f"latent cache rows hold {latent_cache.shape[2]} values, not kv_lora_rank "
            f"{kv_lora_rank} + rope {k_pe.shape[1]}"
        )
    slots = slot_mapping[:num_tokens].to(device=latent_cache.device, dtype=torch.long)
    is_real = slots >= 0
    slots = slots[is_real]
    block_size = latent_cache.shape[1]
    blocks, offsets = slots // block_size, slots % block_size
    latent_cache[blocks, offsets, :kv_lora_rank] = kv_c[is_real].to(latent_cache.dtype)
    latent_cache[blocks, offsets, kv_lora_rank:] = k_pe[is_real].to(latent_cache.dtype)


def zero_blocks(latent_cache: Tensor, block_ids: list[int]) -> None:
    """Zero blocks ``block_ids`` of ``latent_cache``, in place."""
    latent_cache[torch.tensor(block_ids, dtype=torch.long, device=latent_cache.device)] = 0


def gather_latent(
    latent_cache: Tensor, block_table: Tensor, token_requests: Tensor, token_positions: Tensor
) -> Tensor:
    """The cached rows of context tokens: token ``t`` is position ``token_positions[t]``
    of request ``token_requests[t]`` (a row of ``block_table``). Returns a fresh
    ``[num_tokens, kv_lora_rank + rope_dim]`` tensor in the cache's dtype."""
    block_size = latent_cache.shape[1]
    positions = token_positions.to(device=latent_cache.device, dtype=torch.long)
    requests = token_requests.to(device=latent_cache.device, dtype=torch.long)
    blocks = block_table.to(device=latent_cache.device, dtype=torch.long)[
        requests, positions // block_size
    ]
    return latent_cache[blocks, positions % block_size]


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
    """Weight-absorbed MLA decode: one query token per request over its whole context.

    ``query``: ``[num_reqs, num_heads, kv_lora_rank + rope_dim]`` (the nope part already
    multiplied by ``W_UK``). Every head attends to the one latent KV head: keys are the
    cached rows, values their first ``kv_lora_rank`` entries; request ``i`` sees its first
    ``seq_lens[i]`` positions (``max_seq_len`` bounds them all). Returns
    ``[num_reqs, num_heads, kv_lora_rank]`` in ``query``'s dtype; computes in float32,
    above ``CHUNK_BUDGET_BYTES`` in chunks of requests. ``host_seq_lens`` is not needed.
    """
    num_reqs, num_heads = query.shape[:2]
    output = query.new_zeros(num_reqs, num_heads, kv_lora_rank)
    if num_reqs == 0 or max_seq_len == 0:
        return output
    bytes_per_request = 4 * max_seq_len * (latent_cache.shape[2] + 2 * num_heads)
    reqs_per_chunk = max(1, CHUNK_BUDGET_BYTES // bytes_per_request)
    seq_lens = seq_lens.to(device=query.device)
    positions = torch.arange(max_seq_len, device=query.device)
    for first in range(0, num_reqs, reqs_per_chunk):
        chunk = slice(first, min(first + reqs_per_chunk, num_reqs))
        context = _gather_padded(latent_cache, block_table[chunk], seq_lens[chunk], max_seq_len)
        scores = torch.matmul(query[chunk].float(), context.transpose(1, 2)).mul_(scale)
        in_context = positions < seq_lens[chunk, None]
        scores.masked_fill_(~in_context[:, None, :], float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        output[chunk] = torch.matmul(probs, context[..., :kv_lora_rank]).to(output.dtype)
    return output


def _gather_padded(
    latent_cache: Tensor, block_table: Tensor, seq_lens: Tensor, max_seq_len: int
) -> Tensor:
    """float32 ``[num_reqs, max_seq_len, row]``: the cached rows of every request's
    positions, zero past its ``seq_len`` (unwritten cache memory may hold NaN)."""
    block_size = latent_cache.shape[1]
    seq_lens = seq_lens.to(device=latent_cache.device, dtype=torch.long)
    num_blocks = -(-max_seq_len // block_size)
    blocks = block_table[:, :num_blocks].to(device=latent_cache.device, dtype=torch.long)
    # Table entries past a request's last block may be stale: read block 0 there.
    used = (seq_lens + block_size - 1) // block_size
    columns = torch.arange(num_blocks, device=blocks.device)
    blocks = torch.where(columns < used[:, None], blocks, 0)
    num_reqs = blocks.shape[0]
    context = latent_cache.index_select(0, blocks.flatten()).view(
        num_reqs, num_blocks * block_size, latent_cache.shape[2]
    )[:, :max_seq_len].float()
    positions = torch.arange(max_seq_len, device=context.device)
    return context.masked_fill_((positions >= seq_lens[:, None])[..., None], 0.0)


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
    """Multi-head attention of ragged requests (MLA prefill, keys and values expanded).

    Request ``r`` owns query rows ``query_start_loc[r]:query_start_loc[r + 1]`` and key
    and value rows ``kv_start_loc[r]:kv_start_loc[r + 1]``. Causal masking is aligned to
    the end: with ``n`` queries over ``m`` keys, query ``i`` sees keys ``j <= m - n + i``
    (the queries are the last ``n`` positions of the context). ``query``/``key``:
    ``[tokens, heads, qk_dim]``, ``value``: ``[tokens, heads, v_dim]``.

    Writes ``[num_query_tokens, heads, v_dim]`` into ``output`` (allocated when None)
    and returns it, with the float32 log-sum-exp ``[heads, num_query_tokens]`` when
    ``return_lse``. Computes in float32.
    """
    num_heads, v_dim = value.shape[1], value.shape[2]
    if output is None:
        output = value.new_empty(query.shape[0], num_heads, v_dim)
    lse = torch.empty(num_heads, query.shape[0], dtype=torch.float32, device=query.device)
    for r in range(len(query_start_loc) - 1):
        q_start, q_end = query_start_loc[r], query_start_loc[r + 1]
        kv_start, kv_end = kv_start_loc[r], kv_start_loc[r + 1]
        if q_end == q_start:
            continue
        q = query[q_start:q_end].transpose(0, 1).float()
        k = key[kv_start:kv_end].transpose(0, 1).float()
        v = value[kv_start:kv_end].transpose(0, 1).float()
        scores = torch.matmul(q, k.transpose(1, 2)).mul_(scale)
        if causal:
            num_queries, num_keys = q_end - q_start, kv_end - kv_start
            hidden = torch.ones(
                num_queries, num_keys, dtype=torch.bool, device=scores.device
            ).triu_(num_keys - num_queries + 1)
            scores.masked_fill_(hidden, float("-inf"))
        if return_lse:
            lse[:, q_start:q_end] = torch.logsumexp(scores, dim=-1)
        probs = torch.softmax(scores, dim=-1)
        output[q_start:q_end] = torch.matmul(probs, v).transpose(0, 1).to(output.dtype)
    if return_lse:
        return output, lse
    return output


class ReferenceMLAKernels:
    """The reference MLA ops as a kernel set (see ``vllm_npu.attention.mla_kernels``)."""

    name = "reference"
    block_size: int | None = None
    dtypes: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32)
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
        """None: the reference ops take any sizes."""
        return []


REFERENCE_MLA_KERNELS = ReferenceMLAKernels()
