"""vLLM IR: where our kernels for vLLM's IR ops are found, and which ones vLLM prefers.

vLLM (0.32, 0.33) runs some layer ops as vLLM IR ops (``vllm.ir.ops.rms_norm``,
``fused_add_rms_norm``): each op has implementations by provider, and the
platform imports them (``Platform.import_ir_kernels``) and orders them
(``Platform.get_default_ir_op_priority``). Ours register under the provider
``npu``, by the functions named in the entry point group ``vllm_npu.ir_kernels``
(the worker's Ascend layer ops), so the platform imports no sibling package.
"""

from __future__ import annotations

from dataclasses import fields
from importlib.metadata import entry_points
from typing import Any

from vllm_npu.platform.discovery import ComponentError

GROUP = "vllm_npu.ir_kernels"
"""Entry point group: functions that register vLLM IR implementations (safe to call
more than once, as vLLM asks the platform for its IR kernels again and again)."""
PROVIDER = "npu"
"""The provider name of our implementations of vLLM IR ops."""


def import_registered() -> list[str]:
    """Call every function registered under ``GROUP``; returns the entry points' names."""
    imported = []
    for entry_point in entry_points(group=GROUP):
        try:
            entry_point.load()()
        except Exception as error:
            dist = entry_point.dist.name if entry_point.dist else "its distribution"
            raise ComponentError(
                f"The vLLM IR kernels {entry_point.name!r} ({entry_point.value}, from "
                f"{dist}) failed to register: {error}"
            ) from error
        imported.append(entry_point.name)
    return imported


def ops_with_our_provider() -> list[str]:
    """Names of the vLLM IR ops that have a supported ``npu`` implementation."""
    from vllm.ir.op import IrOp

    return sorted(
        name
        for name, op in IrOp.registry.items()
        if PROVIDER in op.impls and op.impls[PROVIDER].supported
    )


def default_priority() -> Any:
    """vLLM's ``IrOpPriorityConfig``: ours first where we have a kernel, else native."""
    from vllm.config.kernel import IrOpPriorityConfig

    configurable = {field.name for field in fields(IrOpPriorityConfig)}
    ours = {
        name: [PROVIDER, "native"] for name in ops_with_our_provider() if name in configurable
    }
    return IrOpPriorityConfig.with_default(["native"], **ours)
