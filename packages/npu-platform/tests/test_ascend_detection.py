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


@pytest.fixture
def nnal_missing(clean_env: pytest.MonkeyPatch):
    clean_env.setenv("VLLM_NPU_STANDIN_NNAL", "missing")
    standin.deactivate()
    with standin.installed() as module:
        yield module


def test_missing_nnal_makes_the_backend_unusable_with_the_fix(nnal_missing, clean_env) -> None:
    reason = _ascend.unavailable_reason()
    assert reason is not None and "\n" not in reason
    assert "cannot load NNAL ([Errno 2] libatb.so: cannot open shared object file" in reason
    assert "source <NNAL install path>/atb/set_env.sh" in reason
    assert select_backend().backend is None
    clean_env.setenv("VLLM_NPU_DEVICE", "ascend")
    with pytest.raises(DeviceBackendError, match="Please check that the nnal package"):
        select_backend()
    clean_env.setenv("VLLM_NPU_DEVICE", "ascend-standin")
    with pytest.raises(DeviceBackendError, match="cannot load NNAL"):
        select_backend()


def test_nnal_loaded(stand_in) -> None:
    assert _ascend.nnal_problem() is None


def test_torch_npu_not_paired_with_this_vllm_names_the_one_to_install(
    stand_in, clean_env
) -> None:
    from vllm_npu.platform import version_gate
    from vllm_npu.platform.versions import vllm_version

    release = vllm_version().release
    assert release is not None
    (pairing,) = (
        p for p in version_gate.supported_releases() if p.vllm.release[:2] == release.release[:2]
    )
    clean_env.setattr(stand_in, "__version__", "2.12.0")
    reason = _ascend.unavailable_reason()
    assert reason is not None and reason.startswith("torch_npu 2.12.0 does not match vLLM")
    assert reason.endswith(f"pip install 'torch-npu=={pairing.torch_npu}'")


def test_device_memory_is_refused_before_the_runtime_is_up(stand_in, clean_env) -> None:
    """The front end must not initialise the NPU runtime (torch_npu allows one per
    process): the platform answers the total memory only once a worker did."""
    from vllm_npu.platform.npu_platform import NPUPlatform

    clean_env.setattr("vllm_npu.platform.npu_platform.BACKEND", _ascend.AscendBackend())
    clean_env.setenv(standin.DEVICES_ENV, "2")
    clean_env.setenv("VLLM_NPU_STANDIN_MEMORY_TOTAL", str(32 << 30))
    with pytest.raises(NotImplementedError, match="not queried outside the workers"):
        NPUPlatform.get_device_total_memory()
    assert not torch.npu.is_initialized()
    torch.npu.set_device(1)
    torch.npu.init()
    assert NPUPlatform.get_device_total_memory(1) == 32 << 30


def test_current_memory_usage_answers_for_the_given_device(stand_in, clean_env) -> None:
    from vllm_npu.platform.npu_platform import NPUPlatform

    asked: list[object] = []
    backend = _ascend.AscendBackend()
    clean_env.setattr(backend, "mem_get_info", lambda index=0: asked.append(index) or (3, 10))
    clean_env.setattr("vllm_npu.platform.npu_platform.BACKEND", backend)
    assert NPUPlatform.get_current_memory_usage(torch.device("cpu", 1)) == 7.0
    assert NPUPlatform.get_current_memory_usage(2) == 7.0
    assert NPUPlatform.get_current_memory_usage(None) == 7.0
    assert asked == [1, 2, None]


def test_nnal_mismatch_is_named(clean_env) -> None:
    clean_env.setenv("VLLM_NPU_STANDIN_NNAL", "mismatch")
    with standin.installed():
        reason = _ascend.unavailable_reason()
    assert reason is not None and "undefined symbol" in reason
    assert "Please check the version of the NNAL package" in reason


def test_nnal_lookup_without_torch_npus_loader_state(
    stand_in, clean_env, tmp_path: Path
) -> None:
    """A torch_npu without op_plugin.atb: libatb.so is looked for on LD_LIBRARY_PATH,
    as the dynamic loader finds it."""
    clean_env.setenv("LD_LIBRARY_PATH", str(tmp_path))
    clean_env.setenv("ATB_HOME_PATH", str(tmp_path / "nnal"))
    with pytest.MonkeyPatch.context() as patch:  # undone before the stand-in goes
        patch.setitem(sys.modules, "torch_npu.op_plugin.atb._atb_ops", None)
        problem = _ascend.nnal_problem()
        assert problem is not None
        assert problem.startswith("NNAL's libatb.so is not on LD_LIBRARY_PATH")
        assert f"ATB_HOME_PATH={tmp_path / 'nnal'}" in problem
        (tmp_path / "libatb.so").write_bytes(b"")
        assert _ascend.nnal_problem() is None
