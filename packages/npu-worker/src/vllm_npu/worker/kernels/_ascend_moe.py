"""Ascend MoE kernels: the reference ops' contract on torch_npu's MoE ops, called
as vllm-ascend's all-gather path calls them.

Routing: ``npu_moe_gating_top_k_softmax`` for plain softmax top-k,
``npu_moe_gating_top_k`` for sigmoid scoring, a correction bias or grouped top-k.
Experts: ``npu_moe_init_routing_v2`` sorts the token copies by expert and counts
them, two ``npu_grouped_matmul`` calls (one group per expert) around
``npu_swiglu`` run the expert MLPs, and ``npu_moe_finalize_routing`` weighs and
sums each token's copies back into token order. ``torch_npu`` is imported inside
the ops, so this module imports on a host without it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vllm_npu.worker.kernels._moe_routing import MoERouting

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_EXPERTS = 2048
"""``npu_moe_gating_top_k``: at most this many experts."""
MIN_EXPERTS_PER_GROUP = 3
"""``npu_moe_gating_top_k``: experts per group must exceed 2."""
GROUP_BEST_EXPERT, GROUP_BEST_TWO = 0, 1
"""``group_select_mode``: a group scores its best expert, or its best two summed."""
SOFTMAX, SIGMOID = 0, 1
"""``norm_type`` of ``npu_moe_gating_top_k``."""
COUNT_PER_EXPERT = 1
"""``expert_tokens_num_type`` / ``group_list_type``: tokens per expert, not a cumsum."""
GROUP_ROWS = 0
"""``group_type``: groups split the rows (M axis) of x."""
ONE_OUTPUT = 2
"""``split_item``: the grouped matmul returns one tensor for all groups."""
EPS = 1e-20


def select_experts(
    router_logits: Tensor, routing: MoERouting, *, correction_bias: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(weights float32, expert ids int32), see ``_reference_moe.select_experts``."""
    import torch_npu

    if routing.scoring == "softmax" and not routing.grouped and correction_bias is None:
        weights, ids, _ = torch_npu.npu_moe_gating_top_k_softmax(
            router_logits, None, k=routing.top_k
        )
        weights = weights.float()
        if routing.renormalize:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        if routing.routed_scaling_factor != 1.0:
            weights = weights * routing.routed_scaling_factor
        return weights, ids
    sigmoid = routing.scoring == "sigmoid"
    # With norm_type=1 the op renormalises the chosen sigmoid scores and applies
    # the scaling factor itself; softmax scores come back unnormalised.
    weights, ids, _ = torch_npu.npu_moe_gating_top_k(
        router_logits,
        routing.top_k,
        bias=None if correction_bias is None else correction_bias.to(router_logits.dtype),
        k_group=routing.topk_group or 1,
        group_count=routing.num_expert_group or 1,
        group_select_mode=GROUP_BEST_EXPERT if correction_bias is None else GROUP_BEST_TWO,
        renorm=0,
        norm_type=SIGMOID if sigmoid else SOFTMAX,
        out_flag=False,
        routed_scaling_factor=routing.routed_scaling_factor if sigmoid else 1.0,
        eps=EPS,
    )
    weights = weights.float()
    if not sigmoid:
        if routing.renormalize:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        if routing.routed_scaling_factor != 1.0:
            weights = weights * routing.routed_scaling_factor
    return weights, ids


def fused_experts(
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
    """See ``_reference_moe.fused_experts``; activation SiLU only.

    With ``expert_map`` a copy routed to another rank's expert is computed by local
    expert 0 with weight 0, so every row the finalize op reads is a computed one.
    """
    import torch_npu

    num_tokens, top_k = topk_ids.shape
    if num_tokens == 0:
        return torch.zeros_like(x)
    ids = topk_ids.to(torch.int32)
    weights = topk_weights
    if expert_map is not None:
        local = expert_map.to(device=ids.device, dtype=torch.int32)[ids.long()]
        is_local = local >= 0
        ids = torch.where(is_local, local, torch.zeros_like(local))
        weights = torch.where(is_local, weights, torch.zeros_like(weights))
    if apply_router_weight_on_input:
        x = x * weights.to(x.dtype)
        weights = torch.ones_like(weights)
    num_local = w13.shape[0]
    sorted_x, expanded_row_idx, tokens_per_expert, _ = torch_npu.npu_moe_init_routing_v2(
        x,
        ids,
        active_num=num_tokens * top_k,
        expert_num=num_local,
        expert_tokens_num_type=COUNT_PER_EXPERT,
        expert_tokens_num_flag=True,
        active_expert_range=[0, num_local],
        quant_mode=-1,
    )
    gate_up = torch_npu.npu_grouped_matmul(
        x=[sorted_x],
        weight=[w13.transpose(1, 2)],
        split_item=ONE_OUTPUT,
        group_list_type=COUNT_PER_EXPERT,
        group_type=GROUP_ROWS,
        group_list=tokens_per_expert,
    )[0]
    hidden = torch_npu.npu_swiglu(gate_up, dim=-1)
    expert_out = torch_npu.npu_grouped_matmul(
        x=[hidden],
        weight=[w2.transpose(1, 2)],
        split_item=ONE_OUTPUT,
        group_list_type=COUNT_PER_EXPERT,
        group_type=GROUP_ROWS,
        group_list=tokens_per_expert,
    )[0]
    # init_routing_v2 indexes copies token-major (t * top_k + k); finalize_routing
    # reads them k-major (k * tokens + t).
    src_to_dst = expanded_row_idx.view(num_tokens, top_k).t().contiguous().view(-1)
    return torch_npu.npu_moe_finalize_routing(
        expert_out,
        None,
        None,
        None,
        weights.to(expert_out.dtype),
        src_to_dst,
        None,
        drop_pad_mode=0,
        k=top_k,
    )


class AscendMoEKernels:
    """The torch_npu MoE ops as a kernel set (see ``vllm_npu.worker.kernels``)."""

    name = "ascend"
    select_experts = staticmethod(select_experts)
    fused_experts = staticmethod(fused_experts)

    @staticmethod
    def unsupported(
        *, routing: MoERouting, activation: str, num_experts: int, expert_bias: bool
    ) -> list[str]:
        """What the ops cannot run: the reference's limits, any activation but SiLU
        (``npu_swiglu``), and the routing ``npu_moe_gating_top_k`` refuses (more
        than 2048 experts, groups of fewer than 3 experts, sigmoid scores without
        renormalisation)."""
        features = routing.problems(num_experts)
        if activation != "silu":
            features.append(f"activation {activation!r}")
        if expert_bias:
            features.append("expert MLP biases")
        if routing.scoring == "sigmoid" and not routing.renormalize:
            features.append("sigmoid routing without renormalisation")
        if num_experts > MAX_EXPERTS:
            features.append(f"{num_experts} experts (npu_moe_gating_top_k takes {MAX_EXPERTS})")
        groups = routing.num_expert_group or 1
        if routing.grouped and num_experts // groups < MIN_EXPERTS_PER_GROUP:
            features.append(f"groups of {num_experts // groups} experts")
        return features


ASCEND_MOE_KERNELS = AscendMoEKernels()
