"""``NPUCommunicator``: collectives over the device process group (HCCL or gloo)."""

from __future__ import annotations

from vllm.distributed.device_communicators.base_device_communicator import (
    DeviceCommunicatorBase,
)


class NPUCommunicator(DeviceCommunicatorBase):
    """vLLM's base communicator runs every collective through ``torch.distributed``
    on the group's device backend, which is HCCL on Ascend and gloo on the host.
    """
