"""vLLM worker and model runner for the vllm-npu platform."""

from vllm_npu.worker.npu_worker import NPUWorker

__all__ = ["NPUWorker"]
