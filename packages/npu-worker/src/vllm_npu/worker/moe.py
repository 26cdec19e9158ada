"""vLLM's fused MoE layer on our MoE kernels (``vllm_npu.worker.kernels``).

On an out-of-tree platform vLLM's unquantized MoE method selects no kernel, and its
routers call compiled CUDA/CPU ops. ``register_moe_layers`` registers, through
vLLM's ``CustomOp.register_oot`` / ``PluggableLayer.register_oot``:

- ``NPUUnquantizedFusedMoEMethod`` for ``UnquantizedFusedMoEMethod``: a monolithic
  method (vLLM hands it the router logits) that routes and runs the experts with
  the device backend's MoE kernel set; shared experts, the tensor-parallel
  all-reduce and expert maps stay vLLM's (its ``MoERunner``);
- ``NPURoutedExperts`` for ``RoutedExperts``: refuses, when the model is built, a
  MoE layer whose features the kernels lack (a quantized MoE method, an activation,
  a scoring function, a custom routing function), in one line naming the feature.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from vllm.logger import init_logger
from vllm.model_executor.custom_op import CustomOp, PluggableLayer, op_registry_oot
from vllm.model_executor.layers.fused_moe.routed_experts import RoutedExperts
from vllm.model_executor.layers.fused_moe.unquantized_fused_moe_method import (
    UnquantizedFusedMoEMethod,
)

from vllm_npu.worker.custom_ops import current_kernel_set
from vllm_npu.worker.kernels import MoEKernels, MoERouting, get_moe_kernels

logger = init_logger("vllm.vllm_npu.worker.moe")


def layer_routing(layer: RoutedExperts) -> MoERouting:
    """The routing a vLLM ``RoutedExperts`` layer was built with."""
    grouped = bool(layer.use_grouped_topk)
    return MoERouting(
        top_k=int(layer.top_k),
        scoring=str(layer.scoring_func),
        renormalize=bool(layer.renormalize),
        num_expert_group=layer.num_expert_group if grouped else None,
        topk_group=layer.topk_group if grouped else None,
        routed_scaling_factor=float(layer.routed_scaling_factor),
    )


def unsupported_features(layer: RoutedExperts, kernels: MoEKernels) -> list[str]:
    """What of ``layer`` the kernel set cannot run, named for an error message."""
    features = kernels.unsupported(
        routing=layer_routing(layer),
        activation=layer.activation.value,
        num_experts=int(layer.global_num_experts),
        expert_bias=bool(layer.moe_config.has_bias),
    )
    if layer.custom_routing_function is not None:
        name = getattr(layer.custom_routing_function, "__name__", "a function")
        features.append(f"custom routing function ({name})")
    if layer.apply_router_weight_on_input and layer.top_k != 1:
        features.append("router weights on the input with top_k > 1")
    return features


class NPUUnquantizedFusedMoEMethod(UnquantizedFusedMoEMethod):
    """Unquantized MoE on the device backend's MoE kernels, routing included."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kernel_set: str = current_kernel_set()
        self.kernels: MoEKernels = get_moe_kernels(self.kernel_set)

    @property
    def is_monolithic(self) -> bool:
        return True

    def apply_monolithic(
        self,
        layer: RoutedExperts,
        x: Tensor,
        router_logits: Tensor,
        input_ids: Tensor | None = None,
    ) -> Tensor:
        kernels = self.kernels
        topk_weights, topk_ids = kernels.select_experts(
            router_logits,
            layer_routing(layer),
            correction_bias=layer.e_score_correction_bias,
        )
        return kernels.fused_experts(
            x,
            layer.w13_weight,
            layer.w2_weight,
            topk_weights,
            topk_ids,
            activation=layer.activation.value,
            expert_map=layer.expert_map,
            apply_router_weight_on_input=bool(layer.apply_router_weight_on_input),
        )


class NPURoutedExperts(RoutedExperts):
    """vLLM's routed experts, refused when built if our MoE kernels cannot run them."""

    def __init__(self, layer_name: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(layer_name, *args, **kwargs)
        method = self.quant_method
        if not isinstance(method, NPUUnquantizedFusedMoEMethod):
            raise NotImplementedError(
                f"vllm-npu: MoE layer {layer_name} uses {type(method).__name__}: quantized "
                "MoE is not supported by vllm-npu's MoE kernels; use an unquantized checkpoint."
            )
        features = unsupported_features(self, method.kernels)
        if features:
            raise NotImplementedError(
                f"vllm-npu: MoE layer {layer_name} needs {', '.join(features)}, which the "
                f"{method.kernel_set} MoE kernels do not support."
            )


_REPLACEMENTS: tuple[tuple[type, type, type], ...] = (
    (CustomOp, UnquantizedFusedMoEMethod, NPUUnquantizedFusedMoEMethod),
    (PluggableLayer, RoutedExperts, NPURoutedExperts),
)


def register_moe_layers() -> None:
    """Make vLLM build our MoE method and routed experts; safe to call more than once.

    A layer another plugin already replaced keeps that plugin's class (with a warning).
    """
    for registry, vllm_cls, our_cls in _REPLACEMENTS:
        name = vllm_cls.__name__
        registered = op_registry_oot.get(name)
        if registered is our_cls:
            continue
        if registered is not None:
            logger.warning(
                "vllm-npu: %s is already replaced by %s.%s; keeping it instead of %s.",
                name,
                registered.__module__,
                registered.__qualname__,
                our_cls.__qualname__,
            )
            continue
        registry.register_oot(our_cls, name=name)  # type: ignore[attr-defined]
        # register_oot names the class after the layer it replaces; keep vLLM's
        # registered name ("unquantized_fused_moe", "routed_experts").
        our_cls.name = vllm_cls.name  # type: ignore[attr-defined]


__all__ = [
    "NPURoutedExperts",
    "NPUUnquantizedFusedMoEMethod",
    "layer_routing",
    "register_moe_layers",
    "unsupported_features",
]
