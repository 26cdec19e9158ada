"""The stand-in's torch.npu and ATB loader held to torch_npu's: visible devices,
runtime initialisation, fixed device memory, NNAL missing."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from vllm_npu.testing import standin


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set the environment first, then import a fresh stand-in with ``load()``."""
    monkeypatch.delenv("ASCEND_RT_VISIBLE_DEVICES", raising=False)
    yield monkeypatch
    standin.deactivate()


def load() -> ModuleType:
    standin.deactivate()
    return standin.activate()


@pytest.mark.parametrize(
    ("visible", "count"),
    [
        (None, 4),
        ("", 0),
        ("0,1", 2),
        ("1,3", 2),
        ("2,1", 0),  # not ascending: torch_npu sees none
        ("1,1", 0),
        ("0,7", 1),  # stops at the first index the machine lacks
        ("0,2x3", 2),  # reads up to the first other character
        ("0,,2", 1),  # an empty entry ends the list
    ],
)
def test_device_count_honours_ascend_rt_visible_devices(
    fresh: pytest.MonkeyPatch, visible: str | None, count: int
) -> None:
    fresh.setenv(standin.DEVICES_ENV, "4")
    if visible is not None:
        fresh.setenv("ASCEND_RT_VISIBLE_DEVICES", visible)
    assert load().npu.device_count() == count


def test_runtime_initialisation_is_recorded(fresh: pytest.MonkeyPatch) -> None:
    fresh.setenv(standin.DEVICES_ENV, "2")
    npu = load().npu
    npu.device_count()
    npu.get_device_name(0)
    npu.empty_cache()
    npu.manual_seed_all(0)
    assert not npu.is_initialized() and npu.devices_touched() == frozenset()
    npu.mem_get_info(1)
    assert npu.is_initialized() and npu.devices_touched() == {0, 1}


def test_set_device_touches_only_that_device(fresh: pytest.MonkeyPatch) -> None:
    fresh.setenv(standin.DEVICES_ENV, "2")
    npu = load().npu
    npu.set_device(1)
    assert (npu.is_initialized(), npu.devices_touched()) == (False, {1})


def test_the_call_log_records_each_device_set_once(
    fresh: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Tests of several ranks read from it which NPU each rank's process took."""
    call_log = tmp_path / "calls.txt"
    fresh.setenv("VLLM_NPU_STANDIN_CALL_LOG", str(call_log))
    fresh.setenv(standin.DEVICES_ENV, "2")
    npu = load().npu
    for device in (1, "npu:1", 0):
        npu.set_device(device)
    assert call_log.read_text().split() == ["set_device:1", "set_device:0"]


def test_fixed_device_memory(fresh: pytest.MonkeyPatch) -> None:
    fresh.setenv("VLLM_NPU_STANDIN_MEMORY_TOTAL", str(64 << 30))
    fresh.setenv("VLLM_NPU_STANDIN_MEMORY_FREE", str(60 << 30))
    assert load().npu.mem_get_info(0) == (60 << 30, 64 << 30)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ("missing", "Please check that the nnal package is installed"),
        ("mismatch", "Please check the version of the NNAL package"),
    ],
)
def test_atb_ops_fail_without_nnal_while_torch_npu_imports(
    fresh: pytest.MonkeyPatch, state: str, message: str
) -> None:
    fresh.setenv("VLLM_NPU_STANDIN_NNAL", state)
    torch_npu = load()
    with pytest.raises(OSError, match=message) as raised:
        torch_npu._npu_reshape_and_cache(
            torch.zeros(1, 1, 16, dtype=torch.float16),
            torch.zeros(1, 1, 16, dtype=torch.float16),
            torch.zeros(1, 16, 1, 16, dtype=torch.float16),
            torch.zeros(1, 16, 1, 16, dtype=torch.float16),
            torch.zeros(1, dtype=torch.int32),
        )
    assert raised.value.errno == errno.ENOENT
    from torch_npu.op_plugin.atb import _atb_ops

    assert _atb_ops.NNAL_EX is not None
    # Non-ATB ops still run.
    torch_npu.npu_rms_norm(torch.ones(2, 16), torch.ones(16))
