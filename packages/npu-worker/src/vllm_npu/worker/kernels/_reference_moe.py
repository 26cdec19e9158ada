"""Reference MoE kernels in portable PyTorch: the host backend's ops and the numerical
ground truth for every other kernel set.

Routing is batched over tokens; the experts run as one matmul pair per expert over
the tokens routed to it (tokens grouped by a stable sort on the expert id), with no
Python loop over tokens. Weights follow vLLM's FusedMoE layout: ``w13``
``[experts, 2 * intermediate, hidden]`` (gate rows, then up rows) and ``w2``
``[experts, hidden, intermediate]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vllm_npu.worker.kernels._moe_routing import ACTIVATIONS, MoERouting


def select_experts(
    router_logits: Tensor, routing: MoERouting, *, correction_bias: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(weights float32 ``[tokens, top_k]``, expert ids int64 ``[tokens, top_k]``).

    See ``MoERouting`` for the rule. Among equal scores the lower expert id wins.
    """
    logits = router_logits.float()
    if routing.scoring == "softmax":
        scores = logits.softmax(dim=-1)
    elif routing.scoring == "sigmoid":
        scores = logits.sigmoid()
    else:
        raise ValueError(f"unknown MoE scoring function {routing.scoring!r}")
    choice = scores if correction_bias is None else scores + correction_bias.float()
    if routing.grouped:
        choice = _mask_unchosen_groups(choice, routing, biased=correction_bias is not None)
    ids = _top_indices(choice, routing.top_k)
    weights = scores.gather(1, ids)
    if routing.renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    if routing.routed_scaling_factor != 1.0:
        weights = weights * routing.routed_scaling_factor
    return weights, ids


def _top_indices(scores: Tensor, k: int) -> Tensor:
    """The k best columns of each row; ties go to the lower column (a stable sort)."""
    return scores.sort(dim=-1, descending=True, stable=True).indices[:, :k]


def _mask_unchosen_groups(choice: Tensor, routing: MoERouting, *, biased: bool) -> Tensor:
    """``choice`` with the experts outside each token's ``topk_group`` best groups at -inf."""
    num_tokens, num_experts = choice.shape
    groups = routing.num_expert_group or 1
    grouped = choice.view(num_tokens, groups, num_experts // groups)
    group_scores = grouped.topk(2, dim=-1).values.sum(dim=-1) if biased else grouped.amax(dim=-1)
    chosen = _top_indices(group_scores, routing.topk_group or 1)
    keep = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, chosen, True)
    return grouped.masked_fill(~keep.unsqueeze(-1), float("-inf")).view(num_tokens, num_experts)


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
    """``sum_k topk_weights[t, k] * expert_{topk_ids[t, k]}(x[t])`` for every token t.

    ``expert(x) = w2 @ (act(gate) * up)`` with ``[gate; up] = w13 @ x``. With
    ``expert_map`` (expert parallelism: global id -> local id, -1 where another rank
    holds the expert) only this rank's experts contribute; the ranks' partial sums
    add up to the full result. With ``apply_router_weight_on_input`` the weight
    scales the expert's input instead (top_k must then be 1). Computes in x's dtype
    and returns ``[tokens, hidden]`` in it.
    """
    num_tokens, top_k = topk_ids.shape
    output = torch.zeros_like(x)
    if num_tokens == 0:
        return output
    ids = topk_ids.to(torch.long)
    if expert_map is not None:
        ids = expert_map.to(device=ids.device, dtype=torch.long)[ids]
    flat_ids = ids.flatten()
    flat_weights = topk_weights.flatten().to(x.dtype)
    routed = (flat_ids >= 0).nonzero().squeeze(1)
    order = routed[flat_ids[routed].sort(stable=True).indices]
    num_local = w13.shape[0]
    counts = torch.bincount(flat_ids[order], minlength=num_local).tolist()
    tokens = order // top_k
    inputs = x.index_select(0, tokens)
    if apply_router_weight_on_input:
        inputs = inputs * flat_weights[order].unsqueeze(1)
    expert_out = torch.empty_like(inputs)
    start = 0
    for expert, count in enumerate(counts):
        if count:
            rows = slice(start, start + count)
            expert_out[rows] = _expert_mlp(inputs[rows], w13[expert], w2[expert], activation)
            start += count
    if not apply_router_weight_on_input:
        expert_out = expert_out * flat_weights[order].unsqueeze(1)
    return output.index_add_(0, tokens, expert_out)


def _expert_mlp(x: Tensor, w13: Tensor, w2: Tensor, activation: str) -> Tensor:
    gate, up = F.linear(x, w13).chunk(2, dim=-1)
    if activation == "silu":
        hidden = F.silu(gate) * up
    elif activation == "gelu":
        hidden = F.gelu(gate) * up
    else:
        raise ValueError(f"unknown MoE activation {activation!r}")
    return F.linear(hidden, w2)


class ReferenceMoEKernels:
    """The portable PyTorch MoE ops as a kernel set (see ``vllm_npu.worker.kernels``)."""

    name = "reference"
    select_experts = staticmethod(select_experts)
    fused_experts = staticmethod(fused_experts)

    @staticmethod
    def unsupported(
        *, routing: MoERouting, activation: str, num_experts: int, expert_bias: bool
    ) -> list[str]:
        """Features of a MoE layer these ops cannot run: unknown scoring or
        activation, impossible grouping, and biased expert MLPs (not implemented)."""
        features = routing.problems(num_experts)
        if activation not in ACTIVATIONS:
            features.append(f"activation {activation!r}")
        if expert_bias:
            features.append("expert MLP biases")
        return features


REFERENCE_MOE_KERNELS = ReferenceMoEKernels()
