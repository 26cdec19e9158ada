"""``torch.npu`` of the stand-in: the device API of a machine with NPUs whose
memory is the host's. Tensors stay on the CPU, so streams and events are
already complete when work is queued; they keep torch_npu's signatures.

As in torch_npu (npu/__init__.py, npu/utils.py of the 2.13.0 wheel), the calls that
initialise the NPU runtime in the process (``init``, ``mem_get_info``,
``synchronize``, ``current_device``, ``current_stream``, a new ``Stream``) and
``set_device`` (which opens a context on the device) are recorded:
``is_initialized`` and ``devices_touched`` tell whether this process touched an
NPU. ``device_count`` and ``get_device_name`` do not initialise it.

Environment of the stand-in: ``VLLM_NPU_STANDIN_DEVICES`` NPUs on the machine
(default 1), filtered by ``ASCEND_RT_VISIBLE_DEVICES`` as torch_npu does;
``VLLM_NPU_STANDIN_MEMORY_TOTAL`` / ``VLLM_NPU_STANDIN_MEMORY_FREE`` bytes per NPU
for ``mem_get_info`` (default: the host's total and available memory).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import torch

from torch_npu import _calls

DEVICES_ENV = "VLLM_NPU_STANDIN_DEVICES"
VISIBLE_DEVICES_ENV = "ASCEND_RT_VISIBLE_DEVICES"
MEMORY_TOTAL_ENV = "VLLM_NPU_STANDIN_MEMORY_TOTAL"
MEMORY_FREE_ENV = "VLLM_NPU_STANDIN_MEMORY_FREE"
MAX_DEVICES = 64
"""torch_npu's default visible list when ASCEND_RT_VISIBLE_DEVICES is unset."""

_current = 0
_initialized = False
_devices_touched: set[int] = set()


def _parse_visible_devices() -> list[int]:
    """``ASCEND_RT_VISIBLE_DEVICES`` read as torch_npu's ``_parse_visible_devices``
    does: digits and commas up to the first other character; an empty entry ends it."""
    var = os.environ.get(VISIBLE_DEVICES_ENV)
    if var is None:
        return list(range(MAX_DEVICES))
    end = next((i for i, c in enumerate(var) if not (c.isdigit() or c == ",")), len(var))
    visible: list[int] = []
    for element in var[:end].split(","):
        if not element:
            return visible
        visible.append(int(element))
    return visible


def device_count() -> int:
    """NPUs this process sees: the machine's, narrowed by ``ASCEND_RT_VISIBLE_DEVICES``
    as torch_npu's ``_device_count_ascend_hal`` does (a list that is not strictly
    ascending gives 0; it stops at the first index the machine lacks)."""
    physical = int(os.environ.get(DEVICES_ENV, "1"))
    visible = _parse_visible_devices()
    for position, index in enumerate(visible):
        if position > 0 and index <= visible[position - 1]:
            return 0
        if index >= physical:
            return position
    return len(visible)


def is_available() -> bool:
    return device_count() > 0


def init() -> None:
    """Initialise the NPU runtime of this process (torch_npu's ``_lazy_init``)."""
    global _initialized
    if device_count() == 0:
        raise RuntimeError("No NPUs are available (ASCEND_RT_VISIBLE_DEVICES hides every device)")
    _initialized = True
    _devices_touched.add(_current)


_lazy_init = init


def is_initialized() -> bool:
    return _initialized


def devices_touched() -> frozenset[int]:
    """The NPUs on which this process initialised the runtime or set the device."""
    return frozenset(_devices_touched)


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
    init()
    return _current


def set_device(device: int | str | torch.device) -> None:
    global _current
    _current = _check_index(device)
    _devices_touched.add(_current)
    _calls.log_device(_current)


def synchronize(device: int | str | torch.device | None = None) -> None:
    init()
    _check_index(device)


def empty_cache() -> None:
    """The host allocator keeps nothing to give back (and, as in torch_npu, this does
    not initialise the runtime)."""


def mem_get_info(device: int | str | torch.device | None = None) -> tuple[int, int]:
    """(free, total) bytes of the NPU: ``VLLM_NPU_STANDIN_MEMORY_FREE`` / ``_TOTAL``
    when set, else the host's available and total memory. Initialises the runtime."""
    index = _check_index(device)
    init()
    _devices_touched.add(index)
    memory = psutil.virtual_memory()
    total = int(os.environ.get(MEMORY_TOTAL_ENV, memory.total))
    free = int(os.environ.get(MEMORY_FREE_ENV, min(memory.available, total)))
    return free, total


def get_device_name(device_name: int | str | torch.device | None = None) -> str:
    _check_index(device_name)
    return "Ascend910B-standin"


def manual_seed(seed: int) -> None:
    torch.manual_seed(seed)


def manual_seed_all(seed: int) -> None:
    torch.manual_seed(seed)


class Stream:
    """A stream whose work is complete once queued (the host runs it inline)."""

    def __init__(self, device: Any = None, priority: int = 0, **kwargs: Any) -> None:
        init()
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

    def __init__(
        self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False
    ) -> None:
        self.recorded = False

    def record(self, stream: Stream | None = None) -> None:
        self.recorded = True

    def wait(self, stream: Stream | None = None) -> None: ...

    def synchronize(self) -> None: ...

    def query(self) -> bool:
        return True


_default_stream: Stream | None = None


def current_stream(device: Any = None) -> Stream:
    global _default_stream
    init()
    if _default_stream is None:
        _default_stream = Stream()
    return _default_stream


@contextmanager
def stream(s: Stream | None) -> Iterator[None]:
    yield
