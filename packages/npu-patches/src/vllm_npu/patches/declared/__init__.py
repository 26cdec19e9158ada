"""Every patch vllm-npu makes, one module per subject."""

from vllm_npu.patches.declared.host_accelerator import HOST_ACCELERATOR_PATCHES
from vllm_npu.patches.declared.host_lora_ops import HOST_LORA_OPS_PATCHES
from vllm_npu.patches.declared.host_ray import HOST_RAY_PATCHES
from vllm_npu.patches.declared.mla_prefill_backend import MLA_PREFILL_BACKEND_PATCHES

DECLARED_PATCHES = (
    *HOST_ACCELERATOR_PATCHES,
    *HOST_LORA_OPS_PATCHES,
    *HOST_RAY_PATCHES,
    *MLA_PREFILL_BACKEND_PATCHES,
)

__all__ = ["DECLARED_PATCHES"]
