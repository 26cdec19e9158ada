"""Device communicator of the vllm-npu platform.

``NPUCommunicator`` is imported on first use: it pulls in vLLM's distributed stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vllm_npu.comm.communicator import NPUCommunicator

__all__ = ["NPUCommunicator"]


def __getattr__(name: str) -> Any:
    if name == "NPUCommunicator":
        from vllm_npu.comm.communicator import NPUCommunicator

        return NPUCommunicator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
