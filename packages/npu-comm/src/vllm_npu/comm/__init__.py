"""Device communicator of the vllm-npu platform."""

from vllm_npu.comm.communicator import NPUCommunicator

__all__ = ["NPUCommunicator"]
