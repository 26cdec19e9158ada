"""What a mixture-of-experts layer asks of its router, as one value the kernel sets share."""

from __future__ import annotations

from dataclasses import dataclass

SCORING_FUNCTIONS = ("softmax", "sigmoid")
ACTIVATIONS = ("silu", "gelu")
"""Gated activations of the expert MLP: ``act(gate) * up`` with ``[gate; up] = w13 x``."""


@dataclass(frozen=True)
class MoERouting:
    """How a token picks its experts and weighs them.

    ``scoring`` turns the router logits into scores (softmax over the experts, or an
    element-wise sigmoid). With ``num_expert_group`` groups (DeepSeek's grouped
    top-k) only experts of the ``topk_group`` best groups compete; a group's score
    is its best expert's score, or the sum of its best two when a correction bias is
    given (DeepSeek-V3). The correction bias only steers the choice: the weights are
    the unbiased scores of the chosen experts, renormalised to sum to one when
    ``renormalize``, then multiplied by ``routed_scaling_factor``.
    """

    top_k: int
    scoring: str = "softmax"
    renormalize: bool = False
    num_expert_group: int | None = None
    topk_group: int | None = None
    routed_scaling_factor: float = 1.0

    @property
    def grouped(self) -> bool:
        return (self.num_expert_group or 1) > 1

    def problems(self, num_experts: int) -> list[str]:
        """What makes this routing impossible for ``num_experts`` experts (empty if none)."""
        problems = []
        if self.scoring not in SCORING_FUNCTIONS:
            problems.append(f"scoring function {self.scoring!r}")
        if not 1 <= self.top_k <= num_experts:
            problems.append(f"top_k={self.top_k} with {num_experts} experts")
        if self.grouped:
            groups, chosen = self.num_expert_group or 1, self.topk_group or 1
            if num_experts % groups:
                problems.append(f"{num_experts} experts in {groups} groups")
            elif not 1 <= chosen <= groups or chosen * (num_experts // groups) < self.top_k:
                problems.append(f"topk_group={chosen} of {groups} groups for top_k={self.top_k}")
        return problems
