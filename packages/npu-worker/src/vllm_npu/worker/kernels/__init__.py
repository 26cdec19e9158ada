"""The model-layer kernels' dispatch layer: named kernel sets behind one protocol per
op family, as vllm_npu.attention.kernels has for attention.

Op families: mixture of experts (``MoEKernels``: routing and the routed experts).
``_reference_moe`` holds the contract and the portable PyTorch set ("reference");
``_ascend_moe`` the torch_npu set ("ascend"), which imports torch_npu inside its ops
so that registering it costs nothing on a host. A layer asks for its device
backend's set by name (``get_moe_kernels``). The norm, rotary and activation ops
are still in ``vllm_npu.worker.custom_ops``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from vllm_npu.worker.kernels._ascend_moe import ASCEND_MOE_KERNELS
from vllm_npu.worker.kernels._moe_routing import ACTIVATIONS, SCORING_FUNCTIONS, MoERouting
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


_MOE_KERNELS_BY_NAME: dict[str, MoEKernels] = {}


def register_moe_kernels(name: str, kernels: MoEKernels) -> None:
    """Make ``kernels`` available as ``name``; a name cannot be taken twice."""
    if not isinstance(kernels, MoEKernels):
        missing = [m for m in ("name", *_MOE_METHODS) if not hasattr(kernels, m)]
        raise TypeError(
            f"{kernels!r} is not a MoE kernel set: it lacks {', '.join(missing)} "
            "(see vllm_npu.worker.kernels.MoEKernels)"
        )
    registered = _MOE_KERNELS_BY_NAME.get(name)
    if registered is not None and registered is not kernels:
        raise ValueError(f"MoE kernel set {name!r} is already registered")
    _MOE_KERNELS_BY_NAME[name] = kernels


_MOE_METHODS = ("unsupported", "select_experts", "fused_experts")


def get_moe_kernels(name: str) -> MoEKernels:
    """The MoE kernel set registered as ``name``."""
    try:
        return _MOE_KERNELS_BY_NAME[name]
    except KeyError:
        raise ValueError(
            f"unknown MoE kernel set {name!r}; registered: {', '.join(available_moe_kernels())}"
        ) from None


def available_moe_kernels() -> tuple[str, ...]:
    """Names of the registered MoE kernel sets, sorted."""
    return tuple(sorted(_MOE_KERNELS_BY_NAME))


register_moe_kernels("reference", REFERENCE_MOE_KERNELS)
register_moe_kernels("ascend", ASCEND_MOE_KERNELS)

__all__ = [
    "ACTIVATIONS",
    "SCORING_FUNCTIONS",
    "MoEKernels",
    "MoERouting",
    "available_moe_kernels",
    "get_moe_kernels",
    "register_moe_kernels",
]
