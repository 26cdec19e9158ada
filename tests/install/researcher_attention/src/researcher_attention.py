"""Paged attention in plain PyTorch, on vLLM's base classes alone.

What a researcher writes to try an idea without vllm-npu-attention: the KV cache
is vLLM's view ``[num_blocks, num_kv_heads, block_size, 2 * head_size]`` (K and
V side by side in the last dim), written through the slot mapping; each
request attends over its blocks with a causal mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from vllm.v1.attention.backend import (
    AttentionBackend,
    AttentionImpl,
    AttentionMetadataBuilder,
    CommonAttentionMetadata,
)


@dataclass
class ResearcherMetadata:
    num_actual_tokens: int
    query_start_loc: list[int]
    seq_lens: list[int]
    block_table: torch.Tensor
    slot_mapping: torch.Tensor


class ResearcherMetadataBuilder(AttentionMetadataBuilder[ResearcherMetadata]):
    def __init__(
        self, kv_cache_spec: Any, layer_names: list[str], vllm_config: Any, device: torch.device
    ) -> None:
        super().__init__(kv_cache_spec, layer_names, vllm_config, device)

    def build(
        self,
        common_prefix_len: int,
        common_attn_metadata: CommonAttentionMetadata,
        fast_build: bool = False,
    ) -> ResearcherMetadata:
        common = common_attn_metadata
        num_reqs = common.num_reqs
        return ResearcherMetadata(
            num_actual_tokens=common.num_actual_tokens,
            query_start_loc=common.query_start_loc_cpu[: num_reqs + 1].tolist(),
            seq_lens=common.seq_lens[:num_reqs].cpu().tolist(),
            block_table=common.block_table_tensor,
            slot_mapping=common.slot_mapping,
        )


class ResearcherBackend(AttentionBackend):
    forward_includes_kv_cache_update: bool = True
    supported_dtypes: ClassVar[list[torch.dtype]] = [
        torch.float32,
        torch.float16,
        torch.bfloat16,
    ]

    @staticmethod
    def get_name() -> str:
        return "CUSTOM"

    @staticmethod
    def get_impl_cls() -> type[ResearcherImpl]:
        return ResearcherImpl

    @staticmethod
    def get_builder_cls() -> type[ResearcherMetadataBuilder]:
        return ResearcherMetadataBuilder


class ResearcherImpl(AttentionImpl[ResearcherMetadata]):
    def __init__(
        self,
        num_heads: int,
        head_size: int,
        scale: float,
        num_kv_heads: int,
        alibi_slopes: Any,
        sliding_window: int | None,
        kv_cache_dtype: str,
        logits_soft_cap: float | None = None,
        attn_type: str = "decoder",
        kv_sharing_target_layer_name: str | None = None,
        **_: Any,
    ) -> None:
        if sliding_window is not None or logits_soft_cap:
            raise NotImplementedError("researcher attention: full causal attention only")
        self.num_heads = num_heads
        self.head_size = head_size
        self.scale = float(scale)
        self.num_kv_heads = num_kv_heads

    def forward(
        self,
        layer: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        kv_cache: torch.Tensor,
        attn_metadata: ResearcherMetadata | None,
        output: torch.Tensor | None = None,
        output_scale: torch.Tensor | None = None,
        output_block_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        assert output is not None
        if attn_metadata is None:  # profiling run
            return output
        meta, size = attn_metadata, self.head_size
        tokens = meta.num_actual_tokens
        query = query[:tokens].reshape(tokens, self.num_heads, size)
        key = key[:tokens].reshape(tokens, self.num_kv_heads, size)
        value = value[:tokens].reshape(tokens, self.num_kv_heads, size)
        out = output[:tokens].view(tokens, self.num_heads, size)
        block_size = kv_cache.shape[2]

        slots = meta.slot_mapping[:tokens].long()
        written = slots >= 0
        blocks, offsets = slots[written] // block_size, slots[written] % block_size
        kv_cache[blocks, :, offsets, :size] = key[written]
        kv_cache[blocks, :, offsets, size:] = value[written]

        group = self.num_heads // self.num_kv_heads
        for request, seq_len in enumerate(meta.seq_lens):
            start, end = meta.query_start_loc[request], meta.query_start_loc[request + 1]
            if end == start:
                continue
            used = meta.block_table[request, : -(-seq_len // block_size)].long()
            cached = kv_cache[used].permute(1, 0, 2, 3).reshape(self.num_kv_heads, -1, 2 * size)
            keys = cached[:, :seq_len, :size].repeat_interleave(group, dim=0)
            values = cached[:, :seq_len, size:].repeat_interleave(group, dim=0)
            query_len = end - start
            positions = torch.arange(seq_len - query_len, seq_len)
            mask = torch.arange(seq_len)[None, :] <= positions[:, None]
            attended = F.scaled_dot_product_attention(
                query[start:end].transpose(0, 1), keys, values, attn_mask=mask, scale=self.scale
            )
            out[start:end] = attended.transpose(0, 1)
        return output
