"""Differences between the vLLM releases we support, detected by feature."""

from __future__ import annotations

from importlib.util import find_spec
from typing import TYPE_CHECKING

from vllm.v1.worker.cpu_model_runner import CPUModelRunner

if TYPE_CHECKING:
    from vllm.config import ParallelConfig


class _KernelsFromPlatform:
    """vLLM asks the platform for its Triton replacements itself (0.31 onwards)."""


class _KernelsFromRunner:
    """Before 0.31 the CPU runner installs vLLM's compiled CPU kernels."""

    def _postprocess_triton(self) -> None:
        """Install the platform's PyTorch kernels instead (vLLM's need ``vllm._C``)."""
        from vllm.platforms import current_platform

        current_platform.register_triton_kernel_overrides()


TritonReplacements: type = (
    _KernelsFromRunner
    if hasattr(CPUModelRunner, "_postprocess_triton")
    else _KernelsFromPlatform
)
"""Mixin for our runner: where this vLLM's CPU runner would install vLLM's
compiled Triton replacements, install the platform's instead."""

PLUGGABLE_MOE_LAYERS: bool = (
    find_spec("vllm.model_executor.layers.fused_moe.routed_experts") is not None
)
"""vLLM builds MoE layers from a pluggable ``RoutedExperts`` and an unquantized
method that can be monolithic (0.28 to 0.33 do), which ``vllm_npu.worker.moe``
replaces; a release without them is left with vLLM's own MoE layers."""


def local_device_index(parallel: ParallelConfig, local_rank: int) -> int:
    """The node-local device of the worker with ``local_rank`` in its engine: offset by
    the engine's data-parallel rank on this node, as vLLM's GPU worker does (each
    data-parallel engine on a node has devices of its own). vLLM 0.33 on computes it
    (``ParallelConfig.get_local_gpu_index``); before, its GPU worker did, inline."""
    get_local_gpu_index = getattr(parallel, "get_local_gpu_index", None)
    if get_local_gpu_index is not None:
        return int(get_local_gpu_index(local_rank))
    if (
        parallel.distributed_executor_backend in ("ray", "external_launcher")
        or parallel.data_parallel_backend == "ray"
        or parallel.nnodes_within_dp != 1
    ):
        return local_rank
    dp_local_rank = parallel.data_parallel_rank_local
    if dp_local_rank is None:
        dp_local_rank = parallel.data_parallel_index
    return local_rank + dp_local_rank * parallel.world_size
