"""The Ascend device backend: torch_npu, NPUs and HCCL."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import torch


def unavailable_reason() -> str | None:
    """Why the Ascend backend cannot be used here, or None when it can.

    Tells apart: torch_npu not installed; installed but CANN missing (its import
    fails on CANN's shared libraries); CANN present but no usable NPU (driver
    missing, or every device hidden).
    """
    if importlib.util.find_spec("torch_npu") is None:
        return "torch_npu is not installed (pip install 'vllm-npu[ascend]')"
    try:
        importlib.import_module("torch_npu")
    except Exception as error:  # torch_npu raises ImportError/OSError/RuntimeError
        return (
            f"torch_npu is installed but does not import ({error}): CANN is missing or "
            "not sourced; install CANN and source its set_env.sh"
        )
    npu = getattr(torch, "npu", None)
    try:
        count = npu.device_count() if npu is not None else 0
    except Exception as error:
        return f"torch_npu imports but the NPU driver does not answer ({error}); check the driver"
    if count == 0:
        return (
            "torch_npu imports but sees no NPU: the NPU driver is missing, or "
            "ASCEND_RT_VISIBLE_DEVICES hides every device"
        )
    return None


def _npu() -> Any:
    return torch.npu  # type: ignore[attr-defined]


class AscendBackend:
    """NPUs through torch_npu."""

    name = "ascend"
    device_type = "npu"
    dispatch_key = "PrivateUse1"
    dist_backend = "hccl"
    kernel_set = "ascend"
    device_control_env_var = "ASCEND_RT_VISIBLE_DEVICES"
    ray_device_key = "NPU"
    ray_noset_device_env_vars = ("RAY_EXPERIMENTAL_NOSET_ASCEND_RT_VISIBLE_DEVICES",)

    def device_count(self) -> int:
        return int(_npu().device_count())

    def set_device(self, device: torch.device) -> None:
        _npu().set_device(device)

    def synchronize(self) -> None:
        _npu().synchronize()

    def empty_cache(self) -> None:
        _npu().empty_cache()

    def mem_get_info(self, device_index: int = 0) -> tuple[int, int]:
        free, total = _npu().mem_get_info(device_index)
        return int(free), int(total)

    def device_name(self, device_index: int = 0) -> str:
        return str(_npu().get_device_name(device_index))

    def manual_seed_all(self, seed: int) -> None:
        _npu().manual_seed_all(seed)
