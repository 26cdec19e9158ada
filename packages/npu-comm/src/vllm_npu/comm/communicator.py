"""``NPUCommunicator``: vLLM's collectives over the device process group.

The device group is HCCL on Ascend and gloo on the host. vLLM's
``DeviceCommunicatorBase`` already runs all-gather (any dim), broadcast, send
and recv through ``torch.distributed`` with vLLM's semantics; those are kept.
Only what the base gets wrong for us is overridden, each with its reason, plus
what the base leaves out: the uneven all-gather and reduce-scatter (``all_gatherv``,
``reduce_scatterv``) and, for the expert-parallel group, the all-gather /
reduce-scatter token dispatch and combine (``_dispatch``) that MoE layers use when
data-parallel ranks share experts.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from vllm.distributed.device_communicators.base_device_communicator import (
    DeviceCommunicatorBase,
)

from vllm_npu.comm._dispatch import AllGatherReduceScatterDispatch


class NPUCommunicator(DeviceCommunicatorBase):
    """Tensor-, pipeline- and expert-parallel collectives for the vllm-npu platform.

    Ranks and ``dst``/``src`` arguments are ranks within the group, as
    everywhere in vLLM; the base translates them to global ranks.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.use_all2all:
            self.all2all_manager = AllGatherReduceScatterDispatch(self.cpu_group)

    def dispatch_router_logits(
        self,
        hidden_states: torch.Tensor,
        router_logits: torch.Tensor,
        is_sequence_parallel: bool = False,
        extra_tensors: list[torch.Tensor] | None = None,
    ) -> Any:
        if self.all2all_manager is None:
            return super().dispatch_router_logits(
                hidden_states, router_logits, is_sequence_parallel, extra_tensors
            )
        return self.all2all_manager.dispatch_router_logits(
            hidden_states, router_logits, is_sequence_parallel, extra_tensors
        )

    def dispatch(
        self,
        hidden_states: torch.Tensor,
        topk_weights: torch.Tensor,
        topk_ids: torch.Tensor,
        is_sequence_parallel: bool = False,
        extra_tensors: list[torch.Tensor] | None = None,
    ) -> Any:
        if self.all2all_manager is None:
            return super().dispatch(
                hidden_states, topk_weights, topk_ids, is_sequence_parallel, extra_tensors
            )
        return self.all2all_manager.dispatch(
            hidden_states,
            topk_weights,
            topk_ids,
            is_sequence_parallel,
            extra_tensors=extra_tensors,
        )

    def combine(
        self, hidden_states: torch.Tensor, is_sequence_parallel: bool = False
    ) -> torch.Tensor:
        if self.all2all_manager is None:
            return super().combine(hidden_states, is_sequence_parallel)
        return self.all2all_manager.combine(hidden_states, is_sequence_parallel)

    def all_gatherv(
        self,
        input_: torch.Tensor | list[torch.Tensor],
        dim: int = 0,
        sizes: list[int] | None = None,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Concatenate each rank's tensor along ``dim``; rank r contributes
        ``sizes[r]`` rows (all equal when None). Uneven parts travel padded to the
        largest (gloo has no uneven all-gather)."""
        if isinstance(input_, (list, tuple)):
            return [self._all_gatherv(tensor, dim, sizes) for tensor in input_]
        return self._all_gatherv(input_, dim, sizes)

    def _all_gatherv(self, input_: torch.Tensor, dim: int, sizes: list[int] | None) -> torch.Tensor:
        dim = _normalized_dim(input_, dim)
        if sizes is None:
            return self.all_gather(input_, dim)
        _check_sizes(sizes, self.world_size, input_.shape[dim], self.rank_in_group)
        moved = input_.movedim(dim, 0)
        padded = moved.new_zeros((max(sizes), *moved.shape[1:]))
        padded[: moved.shape[0]] = moved
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded.contiguous(), group=self.device_group)
        gathered = torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])
        return gathered.movedim(0, dim).contiguous()

    def reduce_scatterv(
        self, input_: torch.Tensor, dim: int = -1, sizes: list[int] | None = None
    ) -> torch.Tensor:
        """Sum over the ranks, then keep this rank's ``sizes[rank]`` rows of ``dim``
        (an equal share when None)."""
        if sizes is None:
            return self.reduce_scatter(input_, dim)
        dim = _normalized_dim(input_, dim)
        if sum(sizes) != input_.shape[dim] or len(sizes) != self.world_size:
            raise ValueError(
                f"reduce_scatterv: sizes {sizes} do not split dim {dim} of shape "
                f"{tuple(input_.shape)} over {self.world_size} ranks."
            )
        total = self.all_reduce(input_)
        start = sum(sizes[: self.rank_in_group])
        return total.narrow(dim, start, sizes[self.rank_in_group]).contiguous()

    def all_reduce(self, input_: torch.Tensor) -> torch.Tensor:
        # The base reduces in place and returns its input; vLLM's all-reduce
        # (the vllm::all_reduce op) promises a new tensor.
        output = input_.clone()
        dist.all_reduce(output, group=self.device_group)
        return output

    def reduce_scatter(self, input_: torch.Tensor, dim: int = -1) -> torch.Tensor:
        if self.world_size == 1:
            return input_
        dim = _normalized_dim(input_, dim)
        if input_.shape[dim] % self.world_size:
            raise ValueError(
                f"reduce_scatter: dim {dim} of shape {tuple(input_.shape)} does not "
                f"divide by the group size {self.world_size}; pad that dim to a "
                f"multiple of {self.world_size}."
            )
        # The base moves dim 0 to `dim` rather than `dim` to 0, which scatters
        # the wrong dim of tensors with three or more dims.
        input_tensor = input_.movedim(dim, 0).contiguous()
        output = torch.empty(
            (input_tensor.shape[0] // self.world_size, *input_tensor.shape[1:]),
            dtype=input_tensor.dtype,
            device=input_tensor.device,
        )
        dist.reduce_scatter_single(output, input_tensor, group=self.device_group)
        return output.movedim(0, dim).contiguous()

    def gather(
        self, input_: torch.Tensor, dst: int = 0, dim: int = -1
    ) -> torch.Tensor | None:
        # The backend reads "hccl" or, for split groups, "npu:hccl".
        if "hccl" not in dist.get_backend(self.device_group):
            return super().gather(input_, dst, dim)
        # torch_npu's HCCL group raises on gather in several releases:
        # all-gather instead and keep the result on dst only.
        gathered = self.all_gather(input_, _normalized_dim(input_, dim))
        return gathered if self.rank_in_group == dst else None


def _check_sizes(sizes: list[int], world_size: int, local: int, rank: int) -> None:
    if len(sizes) != world_size or sizes[rank] != local:
        raise ValueError(
            f"all_gatherv: sizes {sizes} must have one entry per rank ({world_size}) and "
            f"this rank's ({rank}) must be its {local} rows."
        )


def _normalized_dim(tensor: torch.Tensor, dim: int) -> int:
    if not -tensor.dim() <= dim < tensor.dim():
        raise ValueError(
            f"dim {dim} is out of range for a tensor of shape {tuple(tensor.shape)}."
        )
    return dim % tensor.dim()
