"""The ``vllm.platform_plugins`` entry point: activate only where a backend is usable."""

from __future__ import annotations

from vllm.logger import init_logger

from vllm_npu.platform.device import DeviceBackendError, select_backend

logger = init_logger("vllm.vllm_npu.platform")

PLATFORM_QUALNAME = "vllm_npu.platform.npu_platform.NPUPlatform"


def activate() -> str | None:
    """The platform's qualified name when a device backend is usable, else None.

    Never takes over a CUDA or plain CPU host: without NPUs and without
    ``VLLM_NPU_DEVICE=host`` the plugin stays inactive.
    """
    try:
        selection = select_backend()
    except DeviceBackendError as error:
        logger.error("vllm-npu: %s", error)
        return None
    if selection.backend is None:
        logger.debug("vllm-npu inactive: %s", selection.reason)
        return None
    logger.debug("vllm-npu: %s backend selected (%s)", selection.backend.name, selection.reason)
    return PLATFORM_QUALNAME
