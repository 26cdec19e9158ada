"""MoE token dispatch and combine across data-parallel ranks by all-gather and
reduce-scatter: vLLM's ``AgRsAll2AllManager`` semantics, whose module cannot be
imported without a CUDA build of torch (it imports flashinfer).

Every rank gathers the tokens (and router logits) of all data-parallel ranks, runs
its experts on all of them, and the partial outputs are summed and scattered back,
each rank keeping its own tokens. Ranks hold different numbers of tokens: the sizes
come from vLLM's forward context (``dp_metadata``).
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.distributed.device_communicators.base_device_communicator import (
    All2AllManagerBase,
)


class AllGatherReduceScatterDispatch(All2AllManagerBase):
    """The EP group's dispatch (all-gather) and combine (reduce-scatter)."""

    def _group(self, is_sequence_parallel: bool) -> Any:
        from vllm.distributed.parallel_state import get_dp_group, get_ep_group, get_pcp_group

        if is_sequence_parallel:
            return get_ep_group()
        if self.dp_world_size > 1:
            return get_dp_group()
        return get_pcp_group()

    def _sizes(self, num_local_tokens: int, group: Any) -> list[int]:
        if self.dp_world_size == 1:
            return [num_local_tokens] * group.world_size
        from vllm.forward_context import get_forward_context

        sizes = get_forward_context().dp_metadata.get_chunk_sizes_across_dp_rank()
        if sizes is None or len(sizes) != group.world_size:
            raise RuntimeError(
                f"vllm-npu: MoE dispatch expected {group.world_size} token counts from the "
                f"forward context, got {sizes}."
            )
        return list(sizes)

    def dispatch_router_logits(
        self,
        hidden_states: torch.Tensor,
        router_logits: torch.Tensor,
        is_sequence_parallel: bool = False,
        extra_tensors: list[torch.Tensor] | None = None,
    ) -> Any:
        group = self._group(is_sequence_parallel)
        sizes = self._sizes(hidden_states.shape[0], group)
        gathered = group.all_gatherv(
            [hidden_states, router_logits, *(extra_tensors or [])], dim=0, sizes=sizes
        )
        if extra_tensors is not None:
            return gathered[0], gathered[1], gathered[2:]
        return gathered[0], gathered[1]

    def dispatch(
        self,
        hidden_states: torch.Tensor,
        topk_weights: torch.Tensor,
        topk_ids: torch.Tensor,
        is_sequence_parallel: bool = False,
        extra_tensors: list[torch.Tensor] | None = None,
    ) -> Any:
        group = self._group(is_sequence_parallel)
        sizes = self._sizes(hidden_states.shape[0], group)
        gathered = group.all_gatherv(
            [hidden_states, topk_weights, topk_ids, *(extra_tensors or [])], dim=0, sizes=sizes
        )
        if extra_tensors is not None:
            return gathered[0], gathered[1], gathered[2], gathered[3:]
        return gathered[0], gathered[1], gathered[2]

    def combine(
        self, hidden_states: torch.Tensor, is_sequence_parallel: bool = False
    ) -> torch.Tensor:
        group = self._group(is_sequence_parallel)
        sizes = self._sizes(hidden_states.shape[0] // group.world_size, group)
        return group.reduce_scatterv(hidden_states, dim=0, sizes=sizes)

    def destroy(self) -> None:
        pass
