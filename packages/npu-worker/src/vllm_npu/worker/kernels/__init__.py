"""The model-layer kernels: named kernel sets behind one protocol per op family, as
vllm_npu.attention.kernels has for attention.

Op families, one module per family and kernel set (``_reference_<family>`` holds the
contract and the portable PyTorch set "reference", ``_ascend_<family>`` the torch_npu
set "ascend", which imports torch_npu inside its ops so that registering it costs
nothing on a host):

- layer ops (``LayerKernels``: RMSNorm, add + RMSNorm, SwiGLU, rotary embedding),
  called by ``vllm_npu.worker.custom_ops`` and ``ir_kernels``;
- mixture of experts (``MoEKernels``: routing and the routed experts), called by
  ``vllm_npu.worker.moe``.

A layer asks for its device backend's set by name (``get_layer_kernels``,
``get_moe_kernels``). A new family (quantized linear, say) is a protocol, its
modules and one ``KernelSets`` registry here.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from vllm_npu.platform.kernel_sets import KernelSets
from vllm_npu.worker.kernels._ascend_layers import ASCEND_LAYER_KERNELS
from vllm_npu.worker.kernels._ascend_moe import ASCEND_MOE_KERNELS
from vllm_npu.worker.kernels._moe_routing import ACTIVATIONS, SCORING_FUNCTIONS, MoERouting
from vllm_npu.worker.kernels._reference_layers import REFERENCE_LAYER_KERNELS
from vllm_npu.worker.kernels._reference_moe import REFERENCE_MOE_KERNELS


@runtime_checkable
class MoEKernels(Protocol):
    """One set of MoE ops; the semantics are those of ``_reference_moe``."""

    name: str

    def unsupported(
        self, *, routing: MoERouting, activation: str, num_experts: int, expert_bias: bool
    ) -> list[str]:
        """The features of a MoE layer with these settings that the ops cannot run,
        named for an error message; empty when they can run it."""
        ...

    def select_experts(
        self, router_logits: Tensor, routing: MoERouting, *, correction_bias: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """(weights float32 ``[tokens, top_k]``, expert ids ``[tokens, top_k]``)."""
        ...

    def fused_experts(
        self,
        x: Tensor,
        w13: Tensor,
        w2: Tensor,
        topk_weights: Tensor,
        topk_ids: Tensor,
        *,
        activation: str = "silu",
        expert_map: Tensor | None = None,
        apply_router_weight_on_input: bool = False,
    ) -> Tensor:
        """The weighted sum of each token's experts, ``[tokens, hidden]`` in x's dtype."""
        ...


@runtime_checkable
class LayerKernels(Protocol):
    """One set of layer ops; the semantics are those of ``_reference_layers``."""

    name: str

    def rms_norm(self, x: Tensor, weight: Tensor, epsilon: float) -> Tensor: ...

    def fused_add_rms_norm(
        self, x: Tensor, residual: Tensor, weight: Tensor, epsilon: float
    ) -> tuple[Tensor, Tensor]:
        """(rms_norm(x + residual), x + residual)."""
        ...

    def silu_and_mul(self, x: Tensor) -> Tensor: ...

    def rotary_embedding_neox(
        self,
        positions: Tensor,
        query: Tensor,
        key: Tensor | None,
        cos_sin_cache: Tensor,
        head_size: int,
        rotary_dim: int,
    ) -> tuple[Tensor, Tensor | None]: ...


_LAYER_KERNEL_SETS: KernelSets[LayerKernels] = KernelSets(
    "layer", LayerKernels, "vllm_npu.worker.kernels.LayerKernels"
)
_MOE_KERNEL_SETS: KernelSets[MoEKernels] = KernelSets(
    "MoE", MoEKernels, "vllm_npu.worker.kernels.MoEKernels"
)


def register_layer_kernels(name: str, kernels: LayerKernels) -> None:
    """Make ``kernels`` available as ``name``; a name cannot be taken twice."""
    _LAYER_KERNEL_SETS.register(name, kernels)


def get_layer_kernels(name: str) -> LayerKernels:
    """The layer kernel set registered as ``name``."""
    return _LAYER_KERNEL_SETS.get(name)


def available_layer_kernels() -> tuple[str, ...]:
    """Names of the registered layer kernel sets, sorted."""
    return _LAYER_KERNEL_SETS.names()


def register_moe_kernels(name: str, kernels: MoEKernels) -> None:
    """Make ``kernels`` available as ``name``; a name cannot be taken twice."""
    _MOE_KERNEL_SETS.register(name, kernels)


def get_moe_kernels(name: str) -> MoEKernels:
    """The MoE kernel set registered as ``name``."""
    return _MOE_KERNEL_SETS.get(name)


def available_moe_kernels() -> tuple[str, ...]:
    """Names of the registered MoE kernel sets, sorted."""
    return _MOE_KERNEL_SETS.names()


register_layer_kernels("reference", REFERENCE_LAYER_KERNELS)
register_layer_kernels("ascend", ASCEND_LAYER_KERNELS)
register_moe_kernels("reference", REFERENCE_MOE_KERNELS)
register_moe_kernels("ascend", ASCEND_MOE_KERNELS)

__all__ = [
    "ACTIVATIONS",
    "SCORING_FUNCTIONS",
    "LayerKernels",
    "MoEKernels",
    "MoERouting",
    "available_layer_kernels",
    "available_moe_kernels",
    "get_layer_kernels",
    "get_moe_kernels",
    "register_layer_kernels",
    "register_moe_kernels",
]
