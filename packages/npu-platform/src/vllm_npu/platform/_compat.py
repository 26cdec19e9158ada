"""Differences between the vLLM releases we support, detected by feature."""

from __future__ import annotations

import inspect
from typing import Any

SLOT_MAPPING_KERNEL = "vllm.v1.worker.block_table.ComputeSlotMappingKernel.kernel"


def register_slot_mapping_kernel() -> bool:
    """Route vLLM's Triton slot-mapping kernel to our PyTorch one.

    Returns False when this vLLM has no kernel dispatcher (the worker then
    installs the kernel itself).
    """
    try:
        from vllm.triton_utils.dispatcher import register_kernels
    except ImportError:
        return False
    from vllm_npu.platform._kernels import compute_slot_mapping

    register_kernels({SLOT_MAPPING_KERNEL: compute_slot_mapping})
    return True


def attention_backend_problems(backend_cls: Any, selector_config: Any) -> list[str]:
    """vLLM's own validation of ``backend_cls`` for this layer, as a list of reasons.

    ``validate_configuration`` gained arguments over releases; pass those this
    vLLM knows.
    """
    validate = getattr(backend_cls, "validate_configuration", None)
    if validate is None:
        return []
    accepted = inspect.signature(validate).parameters
    arguments = {
        name: value
        for name, value in selector_config._asdict().items()
        if name in accepted
    }
    if "device_capability" in accepted:
        arguments["device_capability"] = None
    return list(validate(**arguments))
