"""Putting the test-only ``torch_npu`` stand-in on ``sys.path``, and taking it off.

The stand-in lives in ``_standin_root/torch_npu`` of this (unreleased) package, out
of ``sys.path`` unless a test asks for it, so that nothing imports it by accident.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import torch

STANDIN_ROOT = Path(__file__).parent / "_standin_root"
"""The folder to put on ``sys.path`` (or ``PYTHONPATH``) to import the stand-in."""
DEVICES_ENV = "VLLM_NPU_STANDIN_DEVICES"
"""How many NPUs the stand-in reports (default 1; 0 for a machine without NPUs)."""


def is_standin(module: ModuleType) -> bool:
    return bool(getattr(module, "__standin__", False))


def activate() -> ModuleType:
    """Import the stand-in as ``torch_npu`` in this process and its children.

    Refuses when another ``torch_npu`` (the real one) is already imported.
    """
    root = str(STANDIN_ROOT)
    loaded = sys.modules.get("torch_npu")
    if loaded is not None and not is_standin(loaded):
        raise RuntimeError("the real torch_npu is already imported; the stand-in cannot replace it")
    if root not in sys.path:
        sys.path.insert(0, root)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, *paths) if p)
    module = importlib.import_module("torch_npu")
    if not is_standin(module):
        raise RuntimeError(f"`import torch_npu` found {module.__file__}, not the stand-in")
    return module


def deactivate() -> None:
    """Undo ``activate``: forget the stand-in's modules, ``torch.npu`` and the path."""
    root = str(STANDIN_ROOT)
    for name in [n for n in sys.modules if n == "torch_npu" or n.startswith("torch_npu.")]:
        del sys.modules[name]
    if hasattr(torch, "npu"):
        delattr(torch, "npu")
    while root in sys.path:
        sys.path.remove(root)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    if paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        os.environ.pop("PYTHONPATH", None)


@contextmanager
def installed() -> Iterator[ModuleType]:
    """The stand-in imported as ``torch_npu`` for the duration of the block."""
    try:
        yield activate()
    finally:
        deactivate()
