"""Every patch vllm-npu makes, one module per subject."""

from vllm_npu.patches.declared.host_accelerator import HOST_ACCELERATOR_PATCHES

DECLARED_PATCHES = (*HOST_ACCELERATOR_PATCHES,)

__all__ = ["DECLARED_PATCHES"]
