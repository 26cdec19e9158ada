"""The host device backend: the CPU, PyTorch kernels and gloo."""

from __future__ import annotations

import os

import psutil
import torch


class HostBackend:
    """Runs every layer of the plugin on the CPU, for CI and laptops."""

    name = "host"
    device_type = "cpu"
    dispatch_key = "CPU"
    dist_backend = "gloo"
    kernel_set = "reference"
    device_control_env_var = "VLLM_NPU_HOST_VISIBLE_DEVICES"
    ray_device_key = "CPU"
    ray_noset_device_env_vars: tuple[str, ...] = ()

    def device_count(self) -> int:
        """CPU cores this process may use: ranks share the CPU, at least a core each."""
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1

    def set_device(self, device: torch.device) -> None:
        """The CPU is always the current device."""

    def synchronize(self) -> None:
        """CPU kernels complete before they return."""

    def empty_cache(self) -> None:
        """The CPU allocator keeps no cache to empty."""

    def runtime_initialized(self) -> bool:
        """The CPU needs no runtime initialisation."""
        return True

    def mem_get_info(self, device_index: int | None = 0) -> tuple[int, int]:
        memory = psutil.virtual_memory()
        return memory.available, memory.total

    def device_name(self, device_index: int = 0) -> str:
        return "cpu"

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)
