"""The Ascend layer ops as vLLM IR implementations (provider ``npu``) of rms_norm and
fused_add_rms_norm.

vLLM (0.32, 0.33) computes RMSNorm through its IR ops ``vllm.ir.ops.rms_norm`` and
``fused_add_rms_norm``; layers that ``CustomOp.register_oot`` does not replace
(``GemmaRMSNorm``, norms inside other layers) call them directly. The platform
calls ``register_ir_kernels`` from ``Platform.import_ir_kernels`` (entry point
group ``vllm_npu.ir_kernels``) and puts ``npu`` first in vLLM's op priority where
it is supported: on a device backend whose kernel set is "ascend". Arguments the fused
torch_npu ops cannot take (no weight, a weight of another dtype, a variance size
override) go to the next provider, vLLM's native one.

No ``from __future__ import annotations``: vLLM infers the op schema from the
signatures, which must equal the native implementation's.
"""

from collections.abc import Callable
from typing import Any

from torch import Tensor
from vllm import ir

from vllm_npu.platform.ir_kernels import PROVIDER
from vllm_npu.worker.custom_ops import ASCEND_KERNEL_SET, ASCEND_LAYER_KERNELS, current_kernel_set


def _rms_norm_fits(
    x: Tensor, weight: Tensor | None, epsilon: float, variance_size: int | None = None
) -> bool:
    return variance_size is None and weight is not None and weight.dtype == x.dtype


def _fused_add_rms_norm_fits(
    x: Tensor,
    x_residual: Tensor,
    weight: Tensor | None,
    epsilon: float,
    variance_size: int | None = None,
) -> bool:
    return variance_size is None and weight is not None and weight.dtype == x.dtype


def rms_norm(
    x: Tensor, weight: Tensor | None, epsilon: float, variance_size: int | None = None
) -> Tensor:
    """``npu_rms_norm``; ``_rms_norm_fits`` has checked the arguments."""
    assert weight is not None
    return ASCEND_LAYER_KERNELS.rms_norm(x, weight, epsilon)


def fused_add_rms_norm(
    x: Tensor,
    x_residual: Tensor,
    weight: Tensor | None,
    epsilon: float,
    variance_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """``npu_add_rms_norm``: (normed x + residual, x + residual)."""
    assert weight is not None
    return ASCEND_LAYER_KERNELS.fused_add_rms_norm(x, x_residual, weight, epsilon)


IMPLEMENTATIONS: dict[str, tuple[Callable[..., Any], Callable[..., bool]]] = {
    "rms_norm": (rms_norm, _rms_norm_fits),
    "fused_add_rms_norm": (fused_add_rms_norm, _fused_add_rms_norm_fits),
}
"""vLLM IR op name -> (our implementation, which arguments it takes)."""


def register_ir_kernels() -> list[str]:
    """Register ours under ``npu``; returns the ops they are supported for.

    Safe to call more than once: each call only updates whether they are
    supported, from the current device backend's kernel set.
    """
    supported = current_kernel_set() == ASCEND_KERNEL_SET
    for name, (implementation, fits) in IMPLEMENTATIONS.items():
        op = getattr(ir.ops, name)
        if PROVIDER not in op.impls:
            op.register_impl(PROVIDER, supported=supported, supports_args=fits)(implementation)
        op.impls[PROVIDER].supported = supported
    return sorted(IMPLEMENTATIONS) if supported else []
