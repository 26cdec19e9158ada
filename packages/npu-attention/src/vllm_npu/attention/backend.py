"""``NPUAttentionBackend``: paged attention over vLLM's KV cache, through our kernels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from vllm.config import VllmConfig
from vllm.v1.attention.backend import (
    AttentionBackend,
    AttentionImpl,
    AttentionMetadataBuilder,
    AttentionType,
    CommonAttentionMetadata,
)
from vllm.v1.attention.backends.utils import split_decodes_and_prefills
from vllm.v1.kv_cache_interface import AttentionSpec

from vllm_npu.attention._compat import KVCacheShape, host_seq_lens
from vllm_npu.attention.kernels import AttentionKernels, HostLengths, get_kernels

DEFAULT_KERNEL_SET = "reference"
"""The kernels on a platform without a device backend of ours (vLLM's CPU platform)."""


def kernels_for_current_device() -> AttentionKernels:
    """The kernel set the platform's device backend names (``backend.kernel_set``)."""
    from vllm.platforms import current_platform

    device_backend = getattr(current_platform, "backend", None)
    if device_backend is None:
        return get_kernels(DEFAULT_KERNEL_SET)
    kernel_set = getattr(device_backend, "kernel_set", None)
    if kernel_set is None:
        raise TypeError(
            f"device backend {getattr(device_backend, 'name', device_backend)!r} names no "
            "attention kernel set (kernel_set); upgrade vllm-npu-platform to match "
            "vllm-npu-attention"
        )
    return get_kernels(kernel_set)


class NPUAttentionBackend(KVCacheShape, AttentionBackend):
    """Decoder self-attention with a paged KV cache, GQA/MQA, sliding window, soft-cap."""

    forward_includes_kv_cache_update: bool = False
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
    def get_impl_cls() -> type[NPUAttentionImpl]:
        return NPUAttentionImpl

    @staticmethod
    def get_builder_cls() -> type[NPUAttentionMetadataBuilder]:
        return NPUAttentionMetadataBuilder

    @staticmethod
    def get_supported_kernel_block_sizes(kv_cache_spec: Any = None) -> list[Any]:
        """The block size the current kernel set requires, else vLLM's default (any).

        vLLM 0.31 onwards passes the layer's ``KVCacheSpec``; earlier releases nothing.
        """
        block_size = kernels_for_current_device().block_size
        if block_size is None:
            return AttentionBackend.get_supported_kernel_block_sizes()
        return [block_size]

    @classmethod
    def supports_dtype(cls, dtype: torch.dtype) -> bool:
        return dtype in kernels_for_current_device().dtypes

    @classmethod
    def supports_sliding_window(cls) -> bool:
        kernels = kernels_for_current_device()
        return not kernels.unsupported(sliding_window=1, logits_soft_cap=None)

    @classmethod
    def supports_attn_type(cls, attn_type: str) -> bool:
        return attn_type == AttentionType.DECODER

    @classmethod
    def unsupported_model_features(cls, vllm_config: VllmConfig) -> list[str]:
        """The model's attention shapes (per rank) that the current kernel set cannot
        run, named with the limit; the platform refuses the model at start-up with them,
        before any layer is built."""
        model, parallel = vllm_config.model_config, vllm_config.parallel_config
        return list(
            kernels_for_current_device().unsupported(
                sliding_window=model.get_sliding_window(),
                logits_soft_cap=getattr(model.hf_text_config, "attn_logit_softcapping", None),
                head_size=model.get_head_size(),
                num_heads=model.get_num_attention_heads(parallel),
                num_kv_heads=model.get_num_kv_heads(parallel),
            )
        )


@dataclass
class NPUAttentionMetadata:
    """What one forward step's attention needs, shared by all layers of a group.

    The batch is ordered decodes first (one query token each), then prefills;
    the two parts are attended separately so that decodes are not padded to
    the longest prefill.
    """

    num_actual_tokens: int
    max_query_len: int
    max_seq_len: int
    query_start_loc: torch.Tensor
    seq_lens: torch.Tensor
    block_table: torch.Tensor
    slot_mapping: torch.Tensor
    num_decodes: int = 0
    num_decode_tokens: int = 0
    prefill_query_start_loc: torch.Tensor | None = None
    """``query_start_loc`` of the prefill part, counted from its first token."""
    decode_lengths: HostLengths | None = None
    """The decode part's lengths on the host (for kernels that plan on the host)."""
    prefill_lengths: HostLengths | None = None
    """The prefill part's, its query bounds counted from its first token."""


class NPUAttentionMetadataBuilder(AttentionMetadataBuilder[NPUAttentionMetadata]):
    """Turns vLLM's common metadata into ours, split into decodes and prefills."""

    # Ask the runner to put requests with one query token first.
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
    ) -> NPUAttentionMetadata:
        common = common_attn_metadata
        num_decodes, num_prefills, num_decode_tokens, _ = split_decodes_and_prefills(
            common, decode_threshold=1
        )
        # The lengths on the host, once per step, from vLLM's CPU copies: no layer
        # reads the device tensors back.
        query_start_loc_cpu = common.query_start_loc_cpu[: common.num_reqs + 1]
        seq_lens_cpu = host_seq_lens(common)
        decode_lengths = prefill_lengths = prefill_query_start_loc = None
        if num_decodes:
            decode_lengths = HostLengths.from_host(
                query_start_loc_cpu[: num_decodes + 1], seq_lens_cpu[:num_decodes]
            )
        if num_prefills:
            prefill_query_start_loc = (
                common.query_start_loc[num_decodes : common.num_reqs + 1] - num_decode_tokens
            )
            prefill_lengths = HostLengths.from_host(
                query_start_loc_cpu[num_decodes:] - num_decode_tokens, seq_lens_cpu[num_decodes:]
            )
        return NPUAttentionMetadata(
            num_actual_tokens=common.num_actual_tokens,
            max_query_len=common.max_query_len,
            max_seq_len=common.max_seq_len,
            query_start_loc=common.query_start_loc,
            seq_lens=common.seq_lens,
            block_table=common.block_table_tensor,
            slot_mapping=common.slot_mapping,
            num_decodes=num_decodes,
            num_decode_tokens=num_decode_tokens,
            prefill_query_start_loc=prefill_query_start_loc,
            decode_lengths=decode_lengths,
            prefill_lengths=prefill_lengths,
        )


class NPUAttentionImpl(AttentionImpl[NPUAttentionMetadata]):
    """Writes new K/V through the slot mapping, then attends over the paged cache."""

    def __init__(
        self,
        num_heads: int,
        head_size: int,
        scale: float,
        num_kv_heads: int,
        alibi_slopes: list[float] | None,
        sliding_window: int | None,
        kv_cache_dtype: str,
        logits_soft_cap: float | None = None,
        attn_type: str = AttentionType.DECODER,
        kv_sharing_target_layer_name: str | None = None,
        sinks: torch.Tensor | None = None,
    ) -> None:
        self.kernels = kernels_for_current_device()
        unsupported = list(
            self.kernels.unsupported(
                sliding_window=sliding_window,
                logits_soft_cap=logits_soft_cap or None,
                head_size=head_size,
                num_heads=num_heads,
                num_kv_heads=num_kv_heads,
            )
        )
        if alibi_slopes is not None:
            unsupported.append("ALiBi")
        if sinks is not None:
            unsupported.append("attention sinks")
        if attn_type != AttentionType.DECODER:
            unsupported.append(f"attention type {attn_type}")
        if kv_cache_dtype != "auto":
            unsupported.append(f"kv_cache_dtype={kv_cache_dtype}")
        if unsupported:
            raise NotImplementedError(
                f"vllm-npu attention ({self.kernels.name} kernels) does not support "
                f"{', '.join(unsupported)}; "
                "select another attention backend with VLLM_NPU_ATTENTION_BACKEND."
            )
        self.num_heads = num_heads
        self.head_size = head_size
        self.scale = float(scale)
        self.num_kv_heads = num_kv_heads
        self.sliding_window = sliding_window
        self.logits_soft_cap = logits_soft_cap or None
        self.kv_cache_dtype = kv_cache_dtype
        self.attn_type = attn_type
        self.kv_sharing_target_layer_name = kv_sharing_target_layer_name

    def kernel_kv_cache(self, kv_cache: torch.Tensor) -> torch.Tensor:
        """The layer's KV cache in the layout of our kernels.

        vLLM hands every backend the view ``[num_blocks, num_kv_heads, block_size,
        2 * head_size]``; a kernel set with a layout of its own (``kv_cache_shape``)
        gets the same memory reinterpreted. Only our kernels read or write it, so the
        interpretation is consistent; blocks are zeroed through ``zero_kv_blocks``.
        """
        if kv_cache.dim() != 4:  # vLLM 0.28 allocated it in our shape (get_kv_cache_shape)
            return kv_cache
        num_blocks, num_kv_heads, block_size, kv_size = kv_cache.shape
        shape = self.kernels.kv_cache_shape(num_blocks, block_size, num_kv_heads, kv_size // 2)
        if shape is None:
            return kv_cache
        if not kv_cache.is_contiguous():
            raise ValueError(
                f"vllm-npu: the {self.kernels.name} attention kernels need each layer's KV "
                "cache in one contiguous piece; unset kv_cache_layout / KV connectors "
                "that change vLLM's KV cache layout."
            )
        return kv_cache.view(shape)

    def zero_kv_blocks(self, kv_cache: torch.Tensor, block_ids: list[int]) -> None:
        """Zero the memory of ``block_ids`` in ``kv_cache`` (vLLM's view of it)."""
        view = self.kernel_kv_cache(kv_cache)
        ids = torch.tensor(block_ids, dtype=torch.long, device=kv_cache.device)
        if view.dim() == 4:  # vLLM's view: blocks first
            view[ids] = 0
        else:  # a kernel layout: (2, num_blocks, ...), see AttentionKernels.kv_cache_shape
            view[:, ids] = 0

    def do_kv_cache_update(
        self,
        layer: torch.nn.Module,
        key: torch.Tensor,
        value: torch.Tensor,
        kv_cache: torch.Tensor,
        slot_mapping: torch.Tensor,
    ) -> None:
        self.kernels.write_kv_cache(key, value, self.kernel_kv_cache(kv_cache), slot_mapping)

    def forward(
        self,
        layer: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        kv_cache: torch.Tensor,
        attn_metadata: NPUAttentionMetadata | None,
        output: torch.Tensor | None = None,
        output_scale: torch.Tensor | None = None,
        output_block_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        assert output is not None, "vLLM always passes the output buffer"
        if output_scale is not None or output_block_scale is not None:
            raise NotImplementedError("vllm-npu attention does not fuse output quantization.")
        if attn_metadata is None:
            # Profiling run: no KV cache yet.
            return output
        meta = attn_metadata
        kv_cache = self.kernel_kv_cache(kv_cache)
        decodes, decode_tokens = meta.num_decodes, meta.num_decode_tokens
        common = dict(
            scale=self.scale,
            sliding_window=self.sliding_window,
            logits_soft_cap=self.logits_soft_cap,
            max_seq_len=meta.max_seq_len,
        )
        if decodes:
            self.kernels.paged_attention(
                query[:decode_tokens],
                kv_cache,
                meta.block_table[:decodes],
                meta.query_start_loc[: decodes + 1],
                meta.seq_lens[:decodes],
                output=output[:decode_tokens],
                max_query_len=1,
                host_lengths=meta.decode_lengths,
                **common,
            )
        if meta.prefill_query_start_loc is not None:
            num_reqs = meta.prefill_query_start_loc.shape[0] - 1 + decodes
            self.kernels.paged_attention(
                query[decode_tokens : meta.num_actual_tokens],
                kv_cache,
                meta.block_table[decodes:num_reqs],
                meta.prefill_query_start_loc,
                meta.seq_lens[decodes:num_reqs],
                output=output[decode_tokens : meta.num_actual_tokens],
                max_query_len=meta.max_query_len,
                host_lengths=meta.prefill_lengths,
                **common,
            )
        return output
