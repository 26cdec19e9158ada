"""The model runner of the Ascend backend: vLLM's V1 runner on ``torch.npu``.

vLLM's ``GPUModelRunner`` with what it takes from CUDA replaced by torch_npu's
equivalents (streams, events, synchronize) and the device-agnostic parts of
vLLM's own CPU runner (model loading without CUDA memory profiling, ``tolist``
outputs, eager execution: no CUDA graphs). Input buffers live on the device and
are copied there each step, as on a GPU. With the test-only torch_npu stand-in
the device is the CPU and the same code runs in CI.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from vllm.config import VllmConfig
from vllm.platforms import current_platform
from vllm.v1.worker.cpu_model_runner import CPUModelRunner
from vllm.v1.worker.gpu_model_runner import GPUModelRunner

from vllm_npu.worker._compat import TritonReplacements
from vllm_npu.worker._seeded_sampling import CPUGeneratorRewind


@contextmanager
def _npu_streams_and_events() -> Iterator[None]:
    """CUDA's stream and event classes, as the runner's constructor names them,
    replaced by torch_npu's for the duration of the block."""
    saved = torch.Event, torch.cuda.Stream
    try:
        torch.Event = torch.npu.Event  # type: ignore[attr-defined,misc]
        torch.cuda.Stream = torch.npu.Stream  # type: ignore[attr-defined,misc]
        yield
    finally:
        torch.Event, torch.cuda.Stream = saved  # type: ignore[misc]


class AscendModelRunner(CPUGeneratorRewind, TritonReplacements, CPUModelRunner):
    """vLLM's V1 runner for the Ascend kernel set (torch_npu attention and custom ops).

    Inherits from ``CPUModelRunner`` only for its device-agnostic methods; its
    constructor (which pins every buffer to the CPU) is skipped.
    """

    def __init__(self, vllm_config: VllmConfig, device: torch.device) -> None:
        with _npu_streams_and_events():
            GPUModelRunner.__init__(self, vllm_config, device)
        self.use_cuda_graph = False
        if hasattr(self, "cascade_attn_enabled"):
            self.cascade_attn_enabled = False
        postprocess_triton = getattr(self, "_postprocess_triton", None)
        if postprocess_triton is not None:
            postprocess_triton()

    def _sync_device(self) -> None:
        current_platform.synchronize()

    def _zero_block_ids(self, block_ids: list[int]) -> None:
        """Zero the blocks' KV memory; the attention layer knows its cache layout."""
        if not block_ids:
            return
        seen: set[int] = set()
        for layer_name, layer in self.compilation_config.static_forward_context.items():
            kv_cache = _layer_kv_cache(layer)
            zero = getattr(getattr(layer, "impl", None), "zero_kv_blocks", None)
            if kv_cache is None or kv_cache.data_ptr() in seen:
                continue
            seen.add(kv_cache.data_ptr())
            if zero is None:
                raise TypeError(
                    f"vllm-npu: layer {layer_name} has a KV cache but its attention "
                    "implementation cannot zero blocks (zero_kv_blocks); use the npu "
                    "attention backend on the Ascend backend."
                )
            zero(kv_cache, block_ids)


def _layer_kv_cache(layer: Any) -> torch.Tensor | None:
    """The layer's KV cache tensor: one tensor, or a one-element list before 0.31."""
    kv_cache = getattr(layer, "kv_cache", None)
    if isinstance(kv_cache, (list, tuple)):
        kv_cache = kv_cache[0] if kv_cache else None
    if isinstance(kv_cache, torch.Tensor) and kv_cache.numel() > 0:
        return kv_cache
    return None
