"""Differences between the vLLM releases we support, detected by feature."""

from __future__ import annotations

from importlib.util import find_spec

from vllm.v1.worker.cpu_model_runner import CPUModelRunner


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
