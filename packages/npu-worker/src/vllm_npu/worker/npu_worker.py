"""``NPUWorker``: vLLM's V1 worker on an NPU, or on the host backend."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import psutil
import torch
from vllm.config import CompilationMode, VllmConfig
from vllm.distributed.parallel_state import get_pp_group
from vllm.logger import init_logger
from vllm.platforms import current_platform
from vllm.utils.mem_utils import format_gib
from vllm.utils.torch_utils import set_random_seed
from vllm.v1.worker.gpu_worker import Worker, init_worker_distributed_environment
from vllm.v1.worker.worker_base import CompilationTimes

from vllm_npu.platform.device import DeviceBackend
from vllm_npu.platform.hooks import run_process_hooks
from vllm_npu.worker._compat import PLUGGABLE_MOE_LAYERS, local_device_index
from vllm_npu.worker._threads import apply_host_threads
from vllm_npu.worker.custom_ops import ASCEND_KERNEL_SET, register_custom_ops

logger = init_logger("vllm.vllm_npu.worker")

HOST_KV_CACHE_ENV = "VLLM_NPU_HOST_KV_CACHE_GB"
DEFAULT_HOST_KV_CACHE_GB = 4.0


class NPUWorker(Worker):
    """Runs one rank of the model on the platform's device backend."""

    def __init__(
        self,
        vllm_config: VllmConfig,
        local_rank: int,
        rank: int,
        distributed_init_method: str,
        is_driver_worker: bool = False,
    ) -> None:
        run_process_hooks("worker")
        # Before any model layer exists: CustomOp picks the class at construction.
        register_custom_ops()
        if PLUGGABLE_MOE_LAYERS:
            from vllm_npu.worker.moe import register_moe_layers

            register_moe_layers()
        super().__init__(
            vllm_config,
            local_rank,
            rank,
            distributed_init_method,
            is_driver_worker=is_driver_worker,
        )
        # Model Runner V2 needs Triton kernels on the device; we run V1.
        self.use_v2_model_runner = False
        self.device_backend: DeviceBackend = current_platform.backend  # type: ignore[attr-defined]

    def init_device(self) -> None:
        backend = self.device_backend
        self.local_rank = local_device_index(self.parallel_config, self.local_rank)
        if backend.device_type == "cpu":
            self.device = torch.device("cpu")
            apply_host_threads(self.parallel_config.local_world_size)
        else:
            self.device = torch.device(f"{backend.device_type}:{self.local_rank}")
        # Select the rank's NPU even where tensors live in host memory (the torch_npu
        # stand-in); on the host backend this does nothing.
        backend.set_device(torch.device(backend.device_type, self.local_rank))
        init_worker_distributed_environment(
            self.vllm_config,
            self.rank,
            self.distributed_init_method,
            self.local_rank,
            current_platform.dist_backend,
        )
        set_random_seed(self.model_config.seed)
        self.model_runner = _runner_class(backend)(self.vllm_config, self.device)

    def load_model(self, *, load_dummy_weights: bool = False) -> None:
        super().load_model(load_dummy_weights=load_dummy_weights)
        if not get_pp_group().is_first_rank:
            # vLLM allocates the buffer for the previous pipeline stage's
            # activations in its profiling run, which eager host workers skip.
            runner = self.model_runner
            runner.intermediate_tensors = runner.model.make_empty_intermediate_tensors(
                batch_size=runner.max_num_tokens,
                dtype=self.model_config.dtype,
                device=self.device,
            )

    def _maybe_get_memory_pool_context(self, tag: str) -> AbstractContextManager[Any]:
        # No sleep-mode allocator exists for our devices.
        return nullcontext()

    def sleep(self, level: int = 1) -> None:
        logger.warning("vllm-npu: sleep mode is not supported; ignored.")

    def wake_up(self, tags: list[str] | None = None) -> None:
        logger.warning("vllm-npu: sleep mode is not supported; ignored.")

    def determine_available_memory(self) -> int:
        """Bytes for the KV cache: ``kv_cache_memory_bytes`` when set, else

        - tensors in host memory (host backend, or the stand-in): a host default,
          ``VLLM_NPU_HOST_KV_CACHE_GB`` (4 GiB), never more than is available;
        - on NPUs: ``gpu_memory_utilization`` of the device's memory minus what is
          in use after a profiling run (weights, and activations the caching
          allocator keeps).
        """
        self._warm_up_if_compiled()
        if self.device.type != "cpu":
            return self._npu_kv_cache_bytes()
        available = psutil.virtual_memory().available
        requested = self.cache_config.kv_cache_memory_bytes
        if requested is None:
            gigabytes = float(os.environ.get(HOST_KV_CACHE_ENV, DEFAULT_HOST_KV_CACHE_GB))
            requested = int(gigabytes * (1 << 30))
        if requested > available:
            raise ValueError(
                f"vllm-npu: the KV cache needs {format_gib(requested)} GiB but only "
                f"{format_gib(available)} GiB of host memory is available; lower "
                f"kv_cache_memory_bytes or {HOST_KV_CACHE_ENV}."
            )
        logger.info("vllm-npu: %s GiB for the KV cache on the host.", format_gib(requested))
        return requested

    def _npu_kv_cache_bytes(self) -> int:
        requested = self.cache_config.kv_cache_memory_bytes
        if requested is not None:
            return int(requested)
        self.model_runner.profile_run()
        self.device_backend.synchronize()
        free, total = self.device_backend.mem_get_info(self.device.index or 0)
        budget = int(total * self.cache_config.gpu_memory_utilization) - (total - free)
        if budget <= 0:
            raise ValueError(
                f"vllm-npu: no NPU memory is left for the KV cache ({format_gib(total - free)}"
                f" GiB of {format_gib(total)} GiB in use); raise gpu_memory_utilization, "
                "lower max_num_batched_tokens, or use more NPUs (tensor_parallel_size)."
            )
        logger.info("vllm-npu: %s GiB for the KV cache on the NPU.", format_gib(budget))
        return budget

    def compile_or_warm_up_model(self) -> CompilationTimes:
        if not self.model_runner.kv_caches:
            self._warm_up_if_compiled()
        set_random_seed(self.model_config.seed)
        return CompilationTimes(
            language_model=self.compilation_config.compilation_time,
            encoder=self.compilation_config.encoder_compilation_time,
        )

    def _warm_up_if_compiled(self) -> None:
        if self.compilation_config.mode != CompilationMode.NONE:
            self.model_runner.warming_up_model()


def _runner_class(backend: DeviceBackend) -> type:
    """The model runner for the backend's kernel set."""
    if backend.kernel_set == ASCEND_KERNEL_SET:
        from vllm_npu.worker.ascend_model_runner import AscendModelRunner

        return AscendModelRunner
    from vllm_npu.worker.host_model_runner import HostModelRunner

    return HostModelRunner
