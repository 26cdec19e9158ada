"""``NPUMLAPrefillBackend``: vLLM's MLA prefill interface (vLLM 0.32 onwards builds one
per MLA layer) on our MLA kernels."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from vllm.v1.attention.backends.mla.prefill.base import MLAPrefillBackend

from vllm_npu.attention.mla_kernels import MLAKernels, get_mla_kernels


def mla_kernels_for_current_device() -> MLAKernels:
    """The MLA kernel set named like the device backend's attention kernel set."""
    from vllm_npu.attention.backend import kernels_for_current_device

    return get_mla_kernels(kernels_for_current_device().name)


class NPUMLAPrefillBackend(MLAPrefillBackend):
    """vLLM's MLA prefill interface on our MLA kernels: new tokens causally, context
    chunks in full, both ragged by vLLM's prefill metadata."""

    supported_dtypes: ClassVar[list[torch.dtype]] = [
        torch.float16,
        torch.bfloat16,
        torch.float32,
    ]

    @staticmethod
    def get_name() -> str:
        return "CUSTOM"

    def supports_out(self) -> bool:
        return True

    def run_prefill_new_tokens(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        return_softmax_lse: bool,
        out: torch.Tensor | None = None,
        output_scale: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if output_scale is not None:
            raise NotImplementedError("vllm-npu MLA prefill does not fuse output quantization.")
        query_start_loc = self._prefill_metadata.query_start_loc.tolist()
        return mla_kernels_for_current_device().prefill_attention(
            q,
            k,
            v,
            query_start_loc,
            query_start_loc,
            scale=self.scale,
            causal=True,
            return_lse=return_softmax_lse,
            output=out,
        )

    def run_prefill_context_chunk(
        self,
        chunk: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        out: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        result = mla_kernels_for_current_device().prefill_attention(
            q,
            k,
            v,
            chunk.query_start_loc.tolist(),
            chunk.cu_seq_lens.tolist(),
            scale=self.scale,
            causal=False,
            return_lse=True,
            output=out,
        )
        assert isinstance(result, tuple)
        return result
