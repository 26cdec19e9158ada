"""Ascend backend detection against real module states: no torch_npu, a torch_npu
that fails to import (CANN missing), the stand-in with no NPU, with NPUs; and the
backend's device API through the stand-in's ``torch.npu``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from vllm_npu.platform import _ascend, select_backend
from vllm_npu.platform.device import DeviceBackendError
from vllm_npu.testing import standin


@pytest.fixture
def stand_in(clean_env: pytest.MonkeyPatch):
    with standin.installed() as module:
        yield module


def test_torch_npu_not_installed(clean_env) -> None:
    assert _ascend.unavailable_reason() == (
        "torch_npu is not installed (pip install 'vllm-npu[ascend]')"
    )


def test_torch_npu_without_cann(clean_env, tmp_path: Path) -> None:
    package = tmp_path / "torch_npu"
    package.mkdir()
    (package / "__init__.py").write_text(
        "raise ImportError('libhccl.so: cannot open shared object file: "
        "No such file or directory')\n"
    )
    clean_env.syspath_prepend(str(tmp_path))
    try:
        reason = _ascend.unavailable_reason()
    finally:
        sys.modules.pop("torch_npu", None)
    assert reason is not None
    assert "libhccl.so" in reason and "CANN is missing or not sourced" in reason
    clean_env.setenv("VLLM_NPU_DEVICE", "ascend")
    with pytest.raises(DeviceBackendError, match="CANN is missing"):
        select_backend()
    sys.modules.pop("torch_npu", None)


def test_torch_npu_without_devices(stand_in, clean_env) -> None:
    clean_env.setenv(standin.DEVICES_ENV, "0")
    assert "sees no NPU: the NPU driver is missing" in _ascend.unavailable_reason()
    assert select_backend().backend is None


def test_npus_select_the_ascend_backend(stand_in, clean_env) -> None:
    clean_env.setenv(standin.DEVICES_ENV, "2")
    selection = select_backend()
    backend = selection.backend
    assert isinstance(backend, _ascend.AscendBackend)
    assert (selection.reason, backend.device_type, backend.dispatch_key) == (
        "torch_npu reports NPUs",
        "npu",
        "PrivateUse1",
    )
    assert (backend.dist_backend, backend.kernel_set) == ("hccl", "ascend")
    assert backend.device_control_env_var == "ASCEND_RT_VISIBLE_DEVICES"
    assert backend.device_count() == 2
    free, total = backend.mem_get_info(1)
    assert 0 < free <= total
    assert "Ascend" in backend.device_name(0)
    backend.set_device("npu:1")  # torch.device("npu:1") needs torch_npu's PrivateUse1 name
    assert torch.npu.current_device() == 1
    backend.synchronize()
    backend.empty_cache()
    with pytest.raises(RuntimeError, match="invalid device ordinal 2"):
        backend.set_device("npu:2")


def test_standin_backend_by_name(clean_env) -> None:
    clean_env.setenv("VLLM_NPU_DEVICE", "ascend-standin")
    try:
        selection = select_backend()
        backend = selection.backend
        assert backend is not None and backend.name == "ascend-standin"
        assert (backend.device_type, backend.kernel_set) == ("cpu", "ascend")
        assert "vllm-npu-testing" in selection.reason
        assert standin.is_standin(sys.modules["torch_npu"])
    finally:
        standin.deactivate()


def test_unknown_backend_lists_the_plugged_in_ones(clean_env) -> None:
    clean_env.setenv("VLLM_NPU_DEVICE", "gpu")
    with pytest.raises(DeviceBackendError, match="one of host, ascend, ascend-standin"):
        select_backend()
