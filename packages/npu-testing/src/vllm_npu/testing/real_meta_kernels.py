"""The real torch_npu's meta (shape) kernels, loaded from the wheel's Python sources
without torch_npu.

``_meta_registrations.py`` and ``_atb_meta_registrations.py`` register each kernel
with ``@impl(Library("npu", "IMPL", "Meta"), "<op>[.<overload>]")``. ``meta_kernels``
runs such a file with a small shim instead of torch_npu: its imports from torch_npu,
``torch.library`` and ``torch.fx.node`` are replaced by the names below, ``impl``
only collects the functions (nothing is registered with the dispatcher), and the
module-level calls that need torch_npu's registered ops (``has_side_effect(...)``)
are left out. The kernels then run as plain Python functions on meta tensors.

The shim answers the few runtime questions the kernels ask as an Atlas A2 (Ascend
910B) with CANN ``SHIM_CANN_VERSION`` would.
"""

from __future__ import annotations

import ast
import math
import os
import warnings
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch

SHIM_CANN_VERSION = "8.5.0"
SHIM_SOC_VERSION = 220
"""torch_npu's SocVersion of an Ascend910B1 (Ascend950 is 260)."""
_NPU_DTYPES = {
    "int4": 285,
    "hifloat8": 290,
    "float8_e8m0fnu": 293,
    "float4_e2m1fn_x2": 296,
    "float4_e1m2fn_x2": 297,
}
"""torch_npu's own dtypes are enum values (the meta file's TORCH_NPU_DTYPE_TO_STRING_MAP)."""


class _ErrCode:
    def __getattr__(self, name: str) -> str:
        return name


def _ops_error(code: Any) -> str:
    return f" [ERR {code}]"


def _is_gte_cann_version(version: str, module: str = "CANN") -> bool:
    return _version_key(SHIM_CANN_VERSION) >= _version_key(version)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


class _Registrations:
    """Stands in for ``torch.library.Library``: remembers the namespace only."""

    def __init__(self, namespace: str, kind: str, dispatch_key: str = "") -> None:
        self.namespace = namespace


_SHIM_NAMES: dict[str, Any] = {
    "ErrCode": _ErrCode(),
    "ops_error": _ops_error,
    "get_cann_version": lambda: SHIM_CANN_VERSION,
    "get_soc_version": lambda: SHIM_SOC_VERSION,
    "has_side_effect": lambda op: op,
    "Library": _Registrations,
}
_SHIMMED_MODULES = ("torch_npu", "torch.library", "torch.fx.node")
_REAL_MODULES = {"math": math, "os": os, "warnings": warnings, "torch": torch}


def _torch_npu_shim() -> SimpleNamespace:
    utils = SimpleNamespace(
        _is_gte_cann_version=_is_gte_cann_version, get_cann_version=lambda: SHIM_CANN_VERSION
    )
    return SimpleNamespace(**_NPU_DTYPES, npu=SimpleNamespace(utils=utils))


def meta_kernels(source: str, filename: str) -> dict[str, Callable[..., Any]]:
    """``"<namespace>::<op>[.<overload>]"`` -> the meta kernel that ``source`` registers."""
    kernels: dict[str, Callable[..., Any]] = {}

    def impl(library: _Registrations, name: str, *_: Any) -> Callable[[Callable], Callable]:
        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            kernels[f"{library.namespace}::{name}"] = function
            return function

        return register

    module = ast.parse(source, filename=filename)
    namespace: dict[str, Any] = {
        "__name__": "real_torch_npu_meta",
        **{name: value for node in module.body for name, value in _imported(node, filename)},
        "impl": impl,
    }
    module.body = [node for node in module.body if not _left_out(node)]
    exec(compile(module, filename, "exec"), namespace)
    return kernels


def _left_out(node: ast.stmt) -> bool:
    """Imports (the shim provides their names) and module-level call statements
    (``has_side_effect(torch.ops.npu.x.default)`` needs torch_npu's registered ops)."""
    is_call = isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
    return is_call or isinstance(node, ast.Import | ast.ImportFrom)


def _imported(node: ast.stmt, filename: str) -> list[tuple[str, Any]]:
    """The (name, value) pairs a module-level import binds, from the shim."""
    if isinstance(node, ast.Import):
        bound = []
        for alias in node.names:
            if alias.name == "torch_npu":
                value: Any = _torch_npu_shim()
            elif alias.name in _REAL_MODULES:
                value = _REAL_MODULES[alias.name]
            else:
                raise ImportError(f"{filename} imports {alias.name}: teach {__name__} about it")
            bound.append((alias.asname or alias.name, value))
        return bound
    if isinstance(node, ast.ImportFrom):
        module = node.module or ""
        if not module.startswith(_SHIMMED_MODULES):
            raise ImportError(f"{filename} imports from {module}: teach {__name__} about it")
        bound = []
        for alias in node.names:
            if alias.name == "impl":
                continue
            if alias.name not in _SHIM_NAMES:
                raise ImportError(
                    f"{filename} imports {alias.name} from {module}: add it to "
                    f"{__name__}._SHIM_NAMES"
                )
            bound.append((alias.asname or alias.name, _SHIM_NAMES[alias.name]))
        return bound
    return []
