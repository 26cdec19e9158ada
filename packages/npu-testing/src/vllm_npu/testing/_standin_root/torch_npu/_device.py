"""Which of the stand-in's tensors live on the "NPU", and the device-to-host reads of them.

The stand-in's tensors are all CPU tensors, so "on the NPU" is a mark: ``to_npu``
marks a tensor's storage as device memory (what ``tensor.npu()`` allocates on a real
machine), and ``is_npu`` tells marked from host tensors. While ``counting_host_reads``
is on, every result computed from a device tensor is a device tensor too, and each
read that would copy device data to the host (``.tolist()``, ``.item()``, ``.cpu()``,
``.numpy()``, ``.to(<a device>)``, ``bool()``/``int()``/``float()``, ``host.copy_(device)``)
is counted: on an NPU each one waits for the whole stream to drain. The stand-in's
NPUs are the CPU, so ``.to(device)`` of a device tensor counts whatever the target.
Stand-in ops run as device kernels: their own reads are not counted.
"""

from __future__ import annotations

import functools
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

__all__ = ["HostReads", "counting_host_reads", "is_npu", "to_npu"]

_device_storages: dict[int, list[weakref.ref[Tensor]]] = {}
"""Storage address -> the marked tensors over it (the mark ends with the last one)."""
_op_depth = 0
"""How many stand-in ops are running (their reads are the device's own)."""

READS = frozenset(
    {"tolist", "item", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__"}
)
"""Tensor methods that hand device data to the host."""

F = TypeVar("F", bound=Callable[..., Any])


def _address(tensor: Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def to_npu(tensor: Tensor) -> Tensor:
    """Mark ``tensor`` (and every view of its storage) as NPU memory; returns it."""
    address = _address(tensor)
    if address:  # empty tensors own no memory
        _device_storages.setdefault(address, []).append(weakref.ref(tensor))
    return tensor


def is_npu(tensor: Any) -> bool:
    """Whether ``tensor`` is a tensor in (stand-in) NPU memory."""
    if not isinstance(tensor, Tensor) or tensor.device.type == "meta":
        return False
    owners = _device_storages.get(_address(tensor))
    if not owners:
        return False
    alive = [owner for owner in owners if owner() is not None]
    if alive:
        owners[:] = alive
        return True
    del _device_storages[_address(tensor)]
    return False


class HostReads:
    """Device-to-host reads counted while ``counting_host_reads`` is on, by kind."""

    def __init__(self) -> None:
        self.by_kind: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())

    def __repr__(self) -> str:
        return f"HostReads({dict(self.by_kind)})"


class _CountingMode(TorchFunctionMode):
    def __init__(self, reads: HostReads) -> None:
        super().__init__()
        self.reads = reads

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if _op_depth:
            return result
        name = getattr(func, "__name__", "")
        inputs, _ = tree_flatten((args, kwargs))
        on_device = any(is_npu(value) for value in inputs)
        if name == "copy_" and args and not is_npu(args[0]):
            on_device = len(args) > 1 and is_npu(args[1])
            if on_device:
                self.reads.by_kind["copy_"] += 1
            return result
        if not on_device:
            return result
        if name in READS or (name == "to" and _names_device(args[1:], kwargs)):
            self.reads.by_kind[name] += 1
            return result
        outputs, _ = tree_flatten(result)
        for output in outputs:
            if isinstance(output, Tensor) and not is_npu(output):
                to_npu(output)
        return result


def _names_device(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if kwargs.get("device") is not None:
        return True
    return any(isinstance(arg, (str, torch.device)) for arg in args)


@contextmanager
def counting_host_reads() -> Iterator[HostReads]:
    """Count device-to-host reads in the block (see the module docstring)."""
    reads = HostReads()
    with _CountingMode(reads):
        yield reads


def device_op(op: F) -> F:
    """Run a stand-in op as a device kernel: its own reads are not counted, and its
    tensor results are on the NPU when any input is."""

    @functools.wraps(op)
    def run(*args: Any, **kwargs: Any) -> Any:
        global _op_depth
        inputs, _ = tree_flatten((args, kwargs))
        _op_depth += 1
        try:
            result = op(*args, **kwargs)
        finally:
            _op_depth -= 1
        if any(is_npu(value) for value in inputs):
            for output in tree_flatten(result)[0]:
                if isinstance(output, Tensor) and not is_npu(output):
                    to_npu(output)
        return result

    return run  # type: ignore[return-value]
