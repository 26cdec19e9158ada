"""LoRA on our platform: vLLM's PyTorch punica ops on host, refused on Ascend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vllm.logger import init_logger

if TYPE_CHECKING:
    from vllm.config import VllmConfig

    from vllm_npu.platform.device import DeviceBackend

logger = init_logger("vllm.vllm_npu.platform")

PUNICA_WRAPPER = "vllm.lora.punica_wrapper.punica_cpu.PunicaWrapperCPU"
"""vLLM's punica wrapper over its PyTorch LoRA ops (``vllm.lora.ops.torch_ops``),
which run on any torch device without compiled kernels."""

LORA_REFUSAL = (
    "vllm-npu: LoRA (enable_lora) is not supported on the Ascend backend yet (no NPU "
    "LoRA kernels); merge the adapter into the weights, or run with "
    "VLLM_NPU_DEVICE=host."
)
"""Start-up error for ``enable_lora`` on the Ascend kernel set."""


def lora_refusal(kernel_set: str) -> str | None:
    """Why LoRA cannot run on a backend with this kernel set, or None if it can."""
    return LORA_REFUSAL if kernel_set == "ascend" else None


def check_lora(vllm_config: VllmConfig, backend: DeviceBackend) -> None:
    """Refuse LoRA at start-up where it cannot run; where it runs, run the model
    eagerly: a traced graph keeps the adapter mapping of the step it was traced on
    (measured: compiled host runs ignore the adapters), as vLLM's CPU platform knows."""
    from vllm.config import CompilationMode

    if getattr(vllm_config, "lora_config", None) is None:
        return
    refusal = lora_refusal(backend.kernel_set)
    if refusal is not None:
        raise ValueError(refusal)
    compilation = vllm_config.compilation_config
    if compilation.mode != CompilationMode.NONE:
        compilation.mode = CompilationMode.NONE
        if compilation.custom_ops == ["none"]:  # vLLM's default for compiled modes
            compilation.custom_ops = ["all"]
        logger.info_once("vllm-npu: graph compilation turned off for LoRA; running eagerly.")


def punica_wrapper(backend: DeviceBackend) -> str:
    """The punica wrapper's qualified name for this backend."""
    refusal = lora_refusal(backend.kernel_set)
    if refusal is not None:
        raise ValueError(refusal)
    return PUNICA_WRAPPER


REFUSALS: dict[str, str] = {"lora": LORA_REFUSAL}
"""Support-matrix feature key -> its start-up refusal (on the Ascend backend)."""
