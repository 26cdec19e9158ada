"""torch_npu, imported when an Ascend op runs (so that the kernel sets import and
register on a host without it)."""

from __future__ import annotations

from types import ModuleType


def torch_npu() -> ModuleType:
    import torch_npu

    return torch_npu
