"""vLLM worker and model runner for the vllm-npu platform.

``NPUWorker`` is imported on first use: importing it pulls in vLLM's worker stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vllm_npu.worker.npu_worker import NPUWorker


def __getattr__(name: str) -> Any:
    if name == "NPUWorker":
        from vllm_npu.worker.npu_worker import NPUWorker

        return NPUWorker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["NPUWorker"]
