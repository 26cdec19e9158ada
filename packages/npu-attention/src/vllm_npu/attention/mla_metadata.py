"""The MLA backend's per-step metadata: vLLM's common attention metadata split into
decodes (first in the batch) and prefills, with each prefill's context tokens listed
once per step for every layer's cache gather, and the lengths the device kernels plan
with read once on the host."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from vllm.config import VllmConfig
from vllm.v1.attention.backend import AttentionMetadataBuilder, CommonAttentionMetadata
from vllm.v1.attention.backends.utils import split_decodes_and_prefills
from vllm.v1.kv_cache_interface import AttentionSpec

from vllm_npu.attention._compat import host_seq_lens


@dataclass
class NPUMLADecodeMetadata:
    """The decode requests (one query token each, first in the batch)."""

    block_table: torch.Tensor
    seq_lens: torch.Tensor
    max_seq_len: int
    host_seq_lens: list[int]
    """``seq_lens`` on the host (for kernels that plan with them), read once per step."""


@dataclass
class NPUMLAPrefillMetadata:
    """The prefill requests (after the decodes) and every token of their contexts."""

    block_table: torch.Tensor
    query_start_loc: list[int]
    """Per prefill request, counted from the first prefill token."""
    context_start_loc: list[int]
    """Cumulative context lengths (cached and new tokens) of the prefill requests."""
    context_requests: torch.Tensor
    """For each context token, its request's row of ``block_table``."""
    context_positions: torch.Tensor
    """For each context token, its position in its request."""


@dataclass
class NPUMLAMetadata:
    """One forward step's MLA metadata, shared by all layers: decodes first, then
    prefills (the fields ``MLAAttention.forward_impl`` reads, plus ours)."""

    num_reqs: int
    num_actual_tokens: int
    max_query_len: int
    max_seq_len: int
    query_start_loc: torch.Tensor
    seq_lens: torch.Tensor
    slot_mapping: torch.Tensor
    num_decodes: int
    num_decode_tokens: int
    num_prefills: int
    decode: NPUMLADecodeMetadata | None = None
    prefill: NPUMLAPrefillMetadata | None = None


class NPUMLAMetadataBuilder(AttentionMetadataBuilder[NPUMLAMetadata]):
    """Splits vLLM's common metadata into decodes and prefills, and lists each
    prefill's context tokens once per step for every layer's cache gather."""

    reorder_batch_threshold: int | None = 1

    def __init__(
        self,
        kv_cache_spec: AttentionSpec,
        layer_names: list[str],
        vllm_config: VllmConfig,
        device: torch.device,
    ) -> None:
        super().__init__(kv_cache_spec, layer_names, vllm_config, device)

    def build(
        self,
        common_prefix_len: int,
        common_attn_metadata: CommonAttentionMetadata,
        fast_build: bool = False,
    ) -> NPUMLAMetadata:
        common = common_attn_metadata
        num_decodes, num_prefills, num_decode_tokens, _ = split_decodes_and_prefills(
            common, decode_threshold=1
        )
        num_reqs = common.num_reqs
        seq_lens_cpu = host_seq_lens(common).to(torch.long)
        decode = prefill = None
        if num_decodes:
            decode = NPUMLADecodeMetadata(
                block_table=common.block_table_tensor[:num_decodes],
                seq_lens=common.seq_lens[:num_decodes],
                max_seq_len=common.max_seq_len,
                host_seq_lens=seq_lens_cpu[:num_decodes].tolist(),
            )
        if num_prefills:
            prefill = self._build_prefill(
                common, num_decodes, num_decode_tokens, seq_lens_cpu[num_decodes:num_reqs]
            )
        return NPUMLAMetadata(
            num_reqs=num_reqs,
            num_actual_tokens=common.num_actual_tokens,
            max_query_len=common.max_query_len,
            max_seq_len=common.max_seq_len,
            query_start_loc=common.query_start_loc,
            seq_lens=common.seq_lens,
            slot_mapping=common.slot_mapping,
            num_decodes=num_decodes,
            num_decode_tokens=num_decode_tokens,
            num_prefills=num_prefills,
            decode=decode,
            prefill=prefill,
        )

    def _build_prefill(
        self,
        common: CommonAttentionMetadata,
        num_decodes: int,
        num_decode_tokens: int,
        seq_lens: torch.Tensor,
    ) -> NPUMLAPrefillMetadata:
        """``seq_lens``: the prefills' lengths on the host."""
        query_start_loc = common.query_start_loc_cpu[num_decodes : common.num_reqs + 1]
        context_start_loc = torch.zeros(seq_lens.shape[0] + 1, dtype=torch.long)
        torch.cumsum(seq_lens, 0, out=context_start_loc[1:])
        requests = torch.repeat_interleave(torch.arange(seq_lens.shape[0]), seq_lens)
        positions = torch.arange(int(context_start_loc[-1])) - context_start_loc[requests]
        return NPUMLAPrefillMetadata(
            block_table=common.block_table_tensor[num_decodes : common.num_reqs],
            query_start_loc=(query_start_loc - num_decode_tokens).tolist(),
            context_start_loc=context_start_loc.tolist(),
            context_requests=requests.to(self.device, non_blocking=True),
            context_positions=positions.to(self.device, non_blocking=True),
        )
