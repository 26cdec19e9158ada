"""Custom ops for vLLM's model layers: RMSNorm, rotary embedding and SiLU-and-mul.

``register_custom_ops`` registers them with vLLM's ``CustomOp.register_oot``, so that
every ``RMSNorm(...)``, ``RotaryEmbedding(...)`` and ``SiluAndMul(...)`` a model builds
is one of ours. Each op picks its kernel set once, when built: on a device backend
whose kernel set is "ascend" it calls torch_npu's fused ops, on any other (the host
backend's "reference") the reference layer kernels where they are bit for bit vLLM's
native code in fewer ops (float32 RMSNorm, neox rotary embedding; eager mode: a
compiled graph keeps the native code for inductor to fuse), else vLLM's native code.
vLLM calls ``forward_oot`` only for an enabled op: the platform enables them with
``"+" + name`` for each name in ``CUSTOM_OP_NAMES`` in ``compilation_config.custom_ops``.
The torch_npu calls are the "ascend" layer kernel set of ``vllm_npu.worker.kernels``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from vllm.logger import init_logger
from vllm.model_executor.custom_op import CustomOp, op_registry_oot
from vllm.model_executor.layers.activation import SiluAndMul
from vllm.model_executor.layers.layernorm import RMSNorm
from vllm.model_executor.layers.rotary_embedding import RotaryEmbedding

from vllm_npu.worker.kernels import LayerKernels, get_layer_kernels

logger = init_logger("vllm.vllm_npu.worker.custom_ops")

ASCEND_KERNEL_SET = "ascend"
"""The device backend's kernel set for which the ops call torch_npu."""
REFERENCE_KERNEL_SET = "reference"
"""The kernel set assumed for a platform whose device backend names none."""

CUSTOM_OP_NAMES: tuple[str, ...] = ("rms_norm", "rotary_embedding", "silu_and_mul")
"""vLLM's names for the ops replaced here, as ``compilation_config.custom_ops`` spells
them ("+rms_norm" enables RMSNorm)."""


def current_kernel_set() -> str:
    """The kernel set of the current platform's device backend ("reference" if none)."""
    from vllm.platforms import current_platform

    backend = getattr(current_platform, "backend", None)
    return str(getattr(backend, "kernel_set", REFERENCE_KERNEL_SET))


ASCEND_LAYER_KERNELS: LayerKernels = get_layer_kernels(ASCEND_KERNEL_SET)
REFERENCE_LAYER_KERNELS: LayerKernels = get_layer_kernels(REFERENCE_KERNEL_SET)


class NPURMSNorm(RMSNorm):
    """vLLM's RMSNorm (and fused add + RMSNorm) on ``npu_rms_norm``/``npu_add_rms_norm``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kernel_set: str = current_kernel_set()
        # The fused ops normalize over the whole last dim.
        self._fused: bool = (
            self.kernel_set == ASCEND_KERNEL_SET and self.variance_size_override is None
        )

    def forward_oot(
        self, x: Tensor, residual: Tensor | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        if not self._fused:
            if (
                x.dtype == torch.float32
                and self.weight.dtype == torch.float32
                and self.variance_size_override is None
                and not torch.compiler.is_compiling()
            ):
                # The reference op is native's float32 arithmetic in one call.
                weight = self.weight.data
                if residual is None:
                    return REFERENCE_LAYER_KERNELS.rms_norm(x, weight, self.variance_epsilon)
                return REFERENCE_LAYER_KERNELS.fused_add_rms_norm(
                    x, residual, weight, self.variance_epsilon
                )
            return self.forward_native(x, residual)
        # vLLM keeps the ones-weight of RMSNorm(has_weight=False) as a plain CPU tensor,
        # not moved with the model: the fused op needs its gamma on x's device.
        weight = self.weight.data if self.has_weight else x.new_ones(self.weight.shape)
        if weight.dtype != x.dtype:
            return self.forward_native(x, residual)
        if residual is None:
            return ASCEND_LAYER_KERNELS.rms_norm(x, weight, self.variance_epsilon)
        return ASCEND_LAYER_KERNELS.fused_add_rms_norm(x, residual, weight, self.variance_epsilon)


class NPURotaryEmbedding(RotaryEmbedding):
    """vLLM's neox-style rotary embedding on ``npu_rotary_mul``; GPT-J style runs natively."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kernel_set: str = current_kernel_set()
        self._fused: bool = self.kernel_set == ASCEND_KERNEL_SET and self.is_neox_style

    def forward_oot(
        self, positions: Tensor, query: Tensor, key: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        if not self._fused:
            if not self.is_neox_style or torch.compiler.is_compiling():
                return self.forward_native(positions, query, key)
            kernels = REFERENCE_LAYER_KERNELS  # native's arithmetic, half the ops
        else:
            kernels = ASCEND_LAYER_KERNELS
        return kernels.rotary_embedding_neox(
            positions,
            query,
            key,
            self._match_cos_sin_cache_dtype(query),
            self.head_size,
            self.rotary_dim,
        )


class NPUSiluAndMul(SiluAndMul):
    """vLLM's SiLU-and-mul (SwiGLU) on ``npu_swiglu``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kernel_set: str = current_kernel_set()
        self._fused: bool = self.kernel_set == ASCEND_KERNEL_SET

    def forward_oot(self, x: Tensor) -> Tensor:
        if not self._fused:
            return self.forward_native(x)
        return ASCEND_LAYER_KERNELS.silu_and_mul(x)


_REPLACEMENTS: tuple[tuple[type[CustomOp], type[CustomOp]], ...] = (
    (RMSNorm, NPURMSNorm),
    (RotaryEmbedding, NPURotaryEmbedding),
    (SiluAndMul, NPUSiluAndMul),
)


def register_custom_ops() -> None:
    """Make vLLM build our ops in place of its RMSNorm, RotaryEmbedding and SiluAndMul.

    Safe to call more than once. An op that another plugin already replaced keeps
    that plugin's class (with a warning).
    """
    for vllm_cls, op_cls in _REPLACEMENTS:
        _register(vllm_cls, op_cls)


def _register(vllm_cls: type[CustomOp], op_cls: type[CustomOp]) -> None:
    # vLLM swaps in an out-of-tree op by the class name of the layer it replaces.
    layer_name = vllm_cls.__name__
    registered = op_registry_oot.get(layer_name)
    if registered is op_cls:
        return
    if registered is not None:
        logger.warning(
            "vllm-npu: %s is already replaced by %s.%s; keeping it instead of %s.",
            layer_name,
            registered.__module__,
            registered.__qualname__,
            op_cls.__qualname__,
        )
        return
    CustomOp.register_oot(_decorated_op_cls=op_cls, name=layer_name)
    # register_oot renames the op after the layer class ("RMSNorm"); keep vLLM's op
    # name ("rms_norm") so that compilation_config.custom_ops "+rms_norm" enables it.
    op_cls.name = vllm_cls.name  # type: ignore[attr-defined]
