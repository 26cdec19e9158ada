"""``torch.npu`` of the stand-in: the device API of a machine with NPUs whose
memory is the host's. Tensors stay on the CPU, so streams and events are
already complete when work is queued; they keep torch_npu's signatures.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import torch

_current = 0


def device_count() -> int:
    return int(os.environ.get("VLLM_NPU_STANDIN_DEVICES", "1"))


def is_available() -> bool:
    return device_count() > 0


def _check_index(device: int | str | torch.device | None) -> int:
    if device is None:
        return _current
    if isinstance(device, str):  # "npu", "npu:1" or "1" ("npu" does not parse as a torch.device)
        kind, _, index = device.rpartition(":") if ":" in device else (device, "", "")
        if kind not in ("npu", "") and not device.isdigit():
            raise RuntimeError(f"expected an npu device, got {device!r}")
        device = int(index) if index else (int(device) if device.isdigit() else _current)
    if isinstance(device, torch.device):
        if device.type not in ("npu", "cpu"):
            raise RuntimeError(f"expected an npu device, got {device}")
        device = device.index if device.index is not None else _current
    if not 0 <= device < device_count():
        raise RuntimeError(f"invalid device ordinal {device}: {device_count()} NPUs visible")
    return device


def current_device() -> int:
    return _current


def set_device(device: int | str | torch.device) -> None:
    global _current
    _current = _check_index(device)


def synchronize(device: int | str | torch.device | None = None) -> None:
    _check_index(device)


def empty_cache() -> None:
    """The host allocator keeps nothing to give back."""


def mem_get_info(device: int | str | torch.device | None = None) -> tuple[int, int]:
    """(free, total) bytes: the host's available and total memory."""
    _check_index(device)
    memory = psutil.virtual_memory()
    return int(memory.available), int(memory.total)


def get_device_name(device: int | str | torch.device | None = None) -> str:
    _check_index(device)
    return "Ascend910B-standin"


def manual_seed(seed: int) -> None:
    torch.manual_seed(seed)


def manual_seed_all(seed: int) -> None:
    torch.manual_seed(seed)


class Stream:
    """A stream whose work is complete once queued (the host runs it inline)."""

    def __init__(self, device: Any = None, priority: int = 0, **kwargs: Any) -> None:
        self.device = torch.device("cpu")
        self.priority = priority

    def wait_stream(self, stream: Stream) -> None: ...

    def wait_event(self, event: Event) -> None: ...

    def record_event(self, event: Event | None = None) -> Event:
        event = event or Event()
        event.record(self)
        return event

    def synchronize(self) -> None: ...

    def query(self) -> bool:
        return True


class Event:
    """An event that completes when recorded."""

    def __init__(self, enable_timing: bool = False, blocking: bool = False, **kwargs: Any):
        self.recorded = False

    def record(self, stream: Stream | None = None) -> None:
        self.recorded = True

    def wait(self, stream: Stream | None = None) -> None: ...

    def synchronize(self) -> None: ...

    def query(self) -> bool:
        return True


_default_stream = Stream()


def current_stream(device: Any = None) -> Stream:
    return _default_stream


@contextmanager
def stream(s: Stream | None) -> Iterator[None]:
    yield
