"""vLLM platform plugin for Ascend NPUs, with a host (CPU) backend for CI.

The entry point ``activate`` is cheap; ``NPUPlatform`` is imported by vLLM
through its qualified name only once the plugin is active.
"""

from vllm_npu.platform._activation import PLATFORM_QUALNAME, activate
from vllm_npu.platform.device import (
    DeviceBackend,
    DeviceBackendError,
    Selection,
    select_backend,
)
from vllm_npu.platform.discovery import ComponentError

__all__ = [
    "PLATFORM_QUALNAME",
    "ComponentError",
    "DeviceBackend",
    "DeviceBackendError",
    "Selection",
    "activate",
    "select_backend",
]
