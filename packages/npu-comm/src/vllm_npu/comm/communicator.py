"""``NPUCommunicator``: vLLM's collectives over the device process group.

The device group is HCCL on Ascend and gloo on the host. vLLM's
``DeviceCommunicatorBase`` already runs all-gather (any dim), broadcast, send
and recv through ``torch.distributed`` with vLLM's semantics; those are kept.
Only what the base gets wrong for us is overridden, each with its reason.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from vllm.distributed.device_communicators.base_device_communicator import (
    DeviceCommunicatorBase,
)


class NPUCommunicator(DeviceCommunicatorBase):
    """Tensor- and pipeline-parallel collectives for the vllm-npu platform.

    Ranks and ``dst``/``src`` arguments are ranks within the group, as
    everywhere in vLLM; the base translates them to global ranks.
    """

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


def _normalized_dim(tensor: torch.Tensor, dim: int) -> int:
    if not -tensor.dim() <= dim < tensor.dim():
        raise ValueError(
            f"dim {dim} is out of range for a tensor of shape {tuple(tensor.shape)}."
        )
    return dim % tensor.dim()
