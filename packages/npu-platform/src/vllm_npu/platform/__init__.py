"""vLLM platform plugin for Ascend NPUs, with a host (CPU) backend for CI.

Importing this package is cheap and imports neither torch nor vLLM (so that
``vllm-npu doctor`` can look at torch_npu before torch is imported); the
names below load on first use. vLLM imports ``NPUPlatform`` through its
qualified name only once the plugin is active.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vllm_npu.platform._activation import PLATFORM_QUALNAME, activate
    from vllm_npu.platform.device import (
        DeviceBackend,
        DeviceBackendError,
        Selection,
        select_backend,
    )
    from vllm_npu.platform.discovery import ComponentError

_LAZY = {
    "PLATFORM_QUALNAME": "vllm_npu.platform._activation",
    "activate": "vllm_npu.platform._activation",
    "DeviceBackend": "vllm_npu.platform.device",
    "DeviceBackendError": "vllm_npu.platform.device",
    "Selection": "vllm_npu.platform.device",
    "select_backend": "vllm_npu.platform.device",
    "ComponentError": "vllm_npu.platform.discovery",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'vllm_npu.platform' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


__all__ = [
    "PLATFORM_QUALNAME",
    "ComponentError",
    "DeviceBackend",
    "DeviceBackendError",
    "Selection",
    "activate",
    "select_backend",
]
