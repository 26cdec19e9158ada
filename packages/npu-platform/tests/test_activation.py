"""Which device backend is selected, and whether the plugin activates at all."""

from __future__ import annotations

import logging
import os

import pytest

from vllm_npu.platform import PLATFORM_QUALNAME, _ascend, activate, select_backend
from vllm_npu.platform.device import DeviceBackendError


@pytest.fixture
def ascend_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend torch_npu imports and sees NPUs (detection only; nothing runs on it)."""
    monkeypatch.setattr(_ascend, "unavailable_reason", lambda: None)


def test_no_backend_leaves_vllm_alone(clean_env) -> None:
    selection = select_backend()
    assert selection.backend is None
    assert "torch_npu is not installed" in selection.reason
    assert activate() is None


def test_host_backend_only_when_asked(clean_env) -> None:
    clean_env.setenv("VLLM_NPU_DEVICE", "host")
    selection = select_backend()
    assert selection.backend is not None
    assert selection.backend.name == "host"
    assert selection.backend.device_type == "cpu"
    assert selection.backend.dist_backend == "gloo"
    assert activate() == PLATFORM_QUALNAME


def test_ascend_selected_when_usable(clean_env, ascend_usable) -> None:
    selection = select_backend()
    assert selection.backend is not None
    assert selection.backend.name == "ascend"
    assert selection.backend.device_type == "npu"
    assert selection.backend.dispatch_key == "PrivateUse1"
    assert selection.backend.dist_backend == "hccl"
    assert selection.backend.device_control_env_var == "ASCEND_RT_VISIBLE_DEVICES"
    assert activate() == PLATFORM_QUALNAME


def test_explicit_host_wins_over_usable_ascend(clean_env, ascend_usable) -> None:
    clean_env.setenv("VLLM_NPU_DEVICE", "host")
    selection = select_backend()
    assert selection.backend is not None and selection.backend.name == "host"


def test_requested_ascend_that_is_unusable_says_why(clean_env, caplog) -> None:
    clean_env.setenv("VLLM_NPU_DEVICE", "ascend")
    with pytest.raises(DeviceBackendError, match="torch_npu is not installed"):
        select_backend()
    with caplog.at_level(logging.ERROR, logger="vllm.vllm_npu.platform"):
        assert activate() is None


@pytest.mark.parametrize("value", ["gpu", "cuda", "npu0"])
def test_unknown_backend_name_is_one_clear_line(clean_env, value: str) -> None:
    clean_env.setenv("VLLM_NPU_DEVICE", value)
    with pytest.raises(DeviceBackendError) as raised:
        select_backend()
    message = str(raised.value)
    assert "\n" not in message
    assert repr(value) in message and "host, ascend" in message


def test_backend_name_is_case_insensitive(clean_env) -> None:
    clean_env.setenv("VLLM_NPU_DEVICE", " HOST ")
    selection = select_backend()
    assert selection.backend is not None and selection.backend.name == "host"


def test_activation_turns_off_cuda_only_builds(clean_env) -> None:
    clean_env.setenv("VLLM_NPU_DEVICE", "host")
    clean_env.delenv("HUMMING_DISABLE_PARALLEL_BUILD", raising=False)
    assert activate() == PLATFORM_QUALNAME
    assert os.environ["HUMMING_DISABLE_PARALLEL_BUILD"] == "1"
    clean_env.setenv("HUMMING_DISABLE_PARALLEL_BUILD", "0")
    activate()
    assert os.environ["HUMMING_DISABLE_PARALLEL_BUILD"] == "0", "the user's choice is kept"


def test_inactive_plugin_changes_no_environment(clean_env) -> None:
    clean_env.delenv("HUMMING_DISABLE_PARALLEL_BUILD", raising=False)
    assert activate() is None
    assert "HUMMING_DISABLE_PARALLEL_BUILD" not in os.environ
