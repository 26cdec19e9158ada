"""``NPUMLABackend``: multi-head latent attention (DeepSeek-V2/V3, Kimi-K2) over a paged
latent cache, through our MLA kernels.

vLLM's ``MLAAttention`` layer drives the impl: it writes each new token's latent
``kv_c`` and rope key ``k_pe`` with ``do_kv_cache_update``, hands prefill tokens to
``forward_mha`` (keys and values expanded by ``kv_b_proj``) and decode tokens, with the
query already absorbed into the latent space (``W_UK``), to ``forward_mqa``; it projects
the decode output back with ``W_UV`` itself. A prefill attends over its whole context
read back from the cache, so chunked prefill and prefix-cache hits need nothing more.
The ops are the device's MLA kernel set (``vllm_npu.attention.mla_kernels``: the
reference set on the host, torch_npu's MLA ops on Ascend); the per-step metadata is
built in ``mla_metadata``, vLLM's separate prefill interface is ``mla_prefill``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from vllm.config import VllmConfig
from vllm.model_executor.layers.attention.mla_attention import MLACommonBackend
from vllm.v1.attention.backend import AttentionLayer, AttentionType, MLAAttentionImpl
from vllm.v1.attention.backends.mla.prefill.base import MLAPrefillBackend

from vllm_npu.attention.backend import kernels_for_current_device
from vllm_npu.attention.mla_kernels import available_mla_kernels, get_mla_kernels
from vllm_npu.attention.mla_metadata import (
    NPUMLADecodeMetadata,
    NPUMLAMetadata,
    NPUMLAMetadataBuilder,
    NPUMLAPrefillMetadata,
)
from vllm_npu.attention.mla_prefill import NPUMLAPrefillBackend, mla_kernels_for_current_device

SELECT_ANOTHER = (
    "select another MLA attention backend with VLLM_NPU_MLA_ATTENTION_BACKEND"
)
__all__ = [
    "NPUMLABackend",
    "NPUMLADecodeMetadata",
    "NPUMLAImpl",
    "NPUMLAMetadata",
    "NPUMLAMetadataBuilder",
    "NPUMLAPrefillBackend",
    "NPUMLAPrefillMetadata",
    "mla_kernels_for_current_device",
    "unsupported_mla_features",
]


def unsupported_mla_features(vllm_config: VllmConfig) -> list[str]:
    """What of this MLA model the backend cannot run, named for a start-up error."""
    model_config = vllm_config.model_config
    features = []
    text_config = model_config.hf_text_config
    if getattr(text_config, "index_topk", None) is not None:
        features.append("sparse MLA (DeepSeek-V3.2 DSA indexer)")
    cache_dtype = vllm_config.cache_config.cache_dtype
    if cache_dtype not in NPUMLABackend.supported_kv_cache_dtypes:
        features.append(f"kv_cache_dtype={cache_dtype} (the latent cache is unquantized)")
    if vllm_config.parallel_config.decode_context_parallel_size > 1:
        features.append("decode context parallelism")
    kernel_set = kernels_for_current_device().name
    if kernel_set not in available_mla_kernels():
        features.append(f"MLA on the {kernel_set} kernel set (it has no MLA kernels yet)")
        return features
    kernels = get_mla_kernels(kernel_set)
    if model_config.dtype not in kernels.dtypes:
        features.append(f"dtype {model_config.dtype} with the {kernels.name} MLA kernels")
    features += kernels.unsupported(
        kv_lora_rank=text_config.kv_lora_rank,
        qk_rope_head_dim=text_config.qk_rope_head_dim,
        qk_nope_head_dim=text_config.qk_nope_head_dim,
        v_head_dim=text_config.v_head_dim,
        num_heads=text_config.num_attention_heads
        // vllm_config.parallel_config.tensor_parallel_size,
    )
    return features


class NPUMLABackend(MLACommonBackend):
    """Dense MLA with an unquantized paged latent cache (``kv_lora_rank + rope`` per
    token, one KV head)."""

    supported_dtypes: ClassVar[list[torch.dtype]] = [
        torch.float16,
        torch.bfloat16,
        torch.float32,
    ]
    supported_kv_cache_dtypes: ClassVar[list[Any]] = ["auto"]

    @staticmethod
    def get_name() -> str:
        # Out-of-tree backends occupy vLLM's CUSTOM slot.
        return "CUSTOM"

    @staticmethod
    def get_impl_cls() -> type[NPUMLAImpl]:
        return NPUMLAImpl

    @staticmethod
    def get_builder_cls() -> type[NPUMLAMetadataBuilder]:
        return NPUMLAMetadataBuilder

    @classmethod
    def get_supported_head_sizes(cls) -> list[int]:
        return []

    @staticmethod
    def get_supported_kernel_block_sizes(kv_cache_spec: Any = None) -> list[Any]:
        """The block size the current MLA kernel set requires, else any."""
        block_size = mla_kernels_for_current_device().block_size
        if block_size is None:
            return MLACommonBackend.get_supported_kernel_block_sizes()
        return [block_size]

    @classmethod
    def supports_dtype(cls, dtype: torch.dtype) -> bool:
        return dtype in mla_kernels_for_current_device().dtypes

    @classmethod
    def supports_attn_type(cls, attn_type: str) -> bool:
        return attn_type == AttentionType.DECODER

    @staticmethod
    def unsupported_model_features(vllm_config: VllmConfig) -> list[str]:
        """Start-up check the platform runs for MLA models (see ``unsupported_mla_features``)."""
        return unsupported_mla_features(vllm_config)

    @staticmethod
    def get_mla_prefill_backend_cls() -> type[MLAPrefillBackend]:
        """The prefill backend vLLM's MLA layer builds (vLLM 0.32 onwards) for impls
        derived from vLLM's ``MLACommonImpl``; ``NPUMLAImpl`` attends prefills itself."""
        return NPUMLAPrefillBackend


class NPUMLAImpl(MLAAttentionImpl[NPUMLAMetadata]):
    """Latent cache writes, MHA prefill over the expanded context, absorbed MQA decode."""

    can_return_lse_for_decode: bool = False

    def __init__(
        self,
        num_heads: int,
        head_size: int,
        scale: float,
        num_kv_heads: int,
        alibi_slopes: list[float] | None,
        sliding_window: int | None,
        kv_cache_dtype: str,
        logits_soft_cap: float | None,
        attn_type: str,
        kv_sharing_target_layer_name: str | None,
        q_lora_rank: int | None,
        kv_lora_rank: int,
        qk_nope_head_dim: int,
        qk_rope_head_dim: int,
        qk_head_dim: int,
        v_head_dim: int,
        kv_b_proj: Any,
        indexer: object | None = None,
        q_pad_num_heads: int | None = None,
        **other_args: Any,
    ) -> None:
        from vllm.config import get_current_vllm_config

        self.kernels = mla_kernels_for_current_device()
        unsupported = list(
            self.kernels.unsupported(
                kv_lora_rank=kv_lora_rank,
                qk_rope_head_dim=qk_rope_head_dim,
                qk_nope_head_dim=qk_nope_head_dim,
                v_head_dim=v_head_dim,
                num_heads=num_heads,
            )
        )
        if indexer is not None or "topk_indices_buffer" in other_args:
            unsupported.append("sparse MLA (DeepSeek-V3.2 DSA indexer)")
        if kv_cache_dtype not in NPUMLABackend.supported_kv_cache_dtypes:
            unsupported.append(f"kv_cache_dtype={kv_cache_dtype}")
        if sliding_window is not None:
            unsupported.append("sliding window")
        if alibi_slopes is not None or logits_soft_cap:
            unsupported.append("ALiBi / logits soft-cap")
        if attn_type != AttentionType.DECODER:
            unsupported.append(f"attention type {attn_type}")
        if kv_sharing_target_layer_name is not None:
            unsupported.append("KV sharing between layers")
        parallel_config = get_current_vllm_config().parallel_config
        if parallel_config.decode_context_parallel_size > 1:
            unsupported.append("decode context parallelism")
        if unsupported:
            raise NotImplementedError(
                f"vllm-npu MLA attention ({self.kernels.name} kernels) does not support "
                f"{', '.join(unsupported)}; {SELECT_ANOTHER}."
            )
        self.num_heads = num_heads
        self.head_size = head_size
        self.scale = float(scale)
        self.num_kv_heads = num_kv_heads
        self.kv_cache_dtype = kv_cache_dtype
        self.q_lora_rank = q_lora_rank
        self.kv_lora_rank = kv_lora_rank
        self.qk_nope_head_dim = qk_nope_head_dim
        self.qk_rope_head_dim = qk_rope_head_dim
        self.qk_head_dim = qk_head_dim
        self.v_head_dim = v_head_dim
        self.kv_b_proj = kv_b_proj
        self.indexer = None
        self.q_pad_num_heads = None
        # What MLAAttention reads of an impl: no DCP, no fp8 query.
        self.dcp_world_size = 1
        self.supports_quant_query_input = False

    def do_kv_cache_update(
        self,
        kv_c_normed: torch.Tensor,
        k_pe: torch.Tensor,
        kv_cache: torch.Tensor,
        slot_mapping: torch.Tensor,
        kv_cache_dtype: str,
        k_scale: torch.Tensor,
        skip_scale: bool = False,
    ) -> None:
        """Store the new tokens' latents; ``k_scale`` and ``skip_scale`` (vLLM 0.33+)
        concern quantized caches, which this backend refuses."""
        if kv_cache.numel() == 0:
            return
        self.kernels.write_latent_cache(kv_c_normed, k_pe, kv_cache, slot_mapping)

    def zero_kv_blocks(self, kv_cache: torch.Tensor, block_ids: list[int]) -> None:
        """Zero the memory of ``block_ids`` in the layer's latent cache (the Ascend model
        runner's block zeroing: the kernel set knows its cache layout)."""
        if kv_cache.numel() and block_ids:
            self.kernels.zero_blocks(kv_cache, block_ids)

    def forward_mha(
        self,
        q: torch.Tensor,
        kv_c_normed: torch.Tensor,
        k_pe: torch.Tensor,
        kv_c_and_k_pe_cache: torch.Tensor,
        attn_metadata: NPUMLAMetadata,
        k_scale: torch.Tensor,
        output: torch.Tensor,
        output_scale: torch.Tensor | None = None,
    ) -> None:
        """Prefill: every context token (the new ones are cached already) read back,
        expanded to per-head keys and values, attended causally by the new queries."""
        if output_scale is not None:
            raise NotImplementedError("vllm-npu MLA attention does not fuse output quantization.")
        prefill = attn_metadata.prefill
        assert prefill is not None
        latent = self.kernels.gather_latent(
            kv_c_and_k_pe_cache,
            prefill.block_table,
            prefill.context_requests,
            prefill.context_positions,
        )
        context_kv_c, context_k_pe = latent.split(
            [self.kv_lora_rank, self.qk_rope_head_dim], dim=-1
        )
        kv_nope = self.kv_b_proj(context_kv_c.to(q.dtype))[0].view(
            -1, self.num_heads, self.qk_nope_head_dim + self.v_head_dim
        )
        k_nope, value = kv_nope.split([self.qk_nope_head_dim, self.v_head_dim], dim=-1)
        key = torch.cat(
            [k_nope, context_k_pe.to(q.dtype)[:, None].expand(-1, self.num_heads, -1)], dim=-1
        )
        self.kernels.prefill_attention(
            q,
            key,
            value,
            prefill.query_start_loc,
            prefill.context_start_loc,
            scale=self.scale,
            output=output.view(-1, self.num_heads, self.v_head_dim),
        )

    def forward_mqa(
        self,
        q: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
        kv_c_and_k_pe_cache: torch.Tensor,
        attn_metadata: NPUMLAMetadata,
        layer: AttentionLayer,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode: the absorbed query against the latent cache; ``[B, heads, kv_lora_rank]``."""
        decode = attn_metadata.decode
        assert decode is not None
        if isinstance(q, tuple):
            q = torch.cat(q, dim=-1)
        output = self.kernels.decode_attention(
            q,
            kv_c_and_k_pe_cache,
            decode.block_table,
            decode.seq_lens,
            scale=self.scale,
            kv_lora_rank=self.kv_lora_rank,
            max_seq_len=decode.max_seq_len,
            host_seq_lens=decode.host_seq_lens,
        )
        return output, None
