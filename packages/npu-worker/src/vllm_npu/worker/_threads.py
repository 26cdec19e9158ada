"""Torch thread count for host workers, so a 2-core machine is not oversubscribed."""

from __future__ import annotations

import os

import torch
from vllm.logger import init_logger

logger = init_logger("vllm.vllm_npu.worker")

HOST_THREADS_ENV = "VLLM_NPU_HOST_THREADS"


def host_thread_count(local_world_size: int) -> int | None:
    """Threads per worker, or None to leave torch's setting alone.

    An explicit ``VLLM_NPU_HOST_THREADS`` wins; an explicit ``OMP_NUM_THREADS``
    is respected as is. Otherwise the cores are shared between the workers on
    this node and the engine front end, which also needs a core: with more
    OpenMP threads than that, spin-waiting threads starve the front end and
    throughput falls 30-60x.
    """
    explicit = os.environ.get(HOST_THREADS_ENV, "").strip()
    if explicit:
        try:
            count = int(explicit)
        except ValueError as error:
            raise ValueError(
                f"{HOST_THREADS_ENV}={explicit!r} is not a number of threads."
            ) from error
        if count < 1:
            raise ValueError(f"{HOST_THREADS_ENV} must be at least 1, got {count}.")
        return count
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return None
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    return max(1, cores // (local_world_size + 1))


def apply_host_threads(local_world_size: int) -> None:
    count = host_thread_count(local_world_size)
    if count is not None and torch.get_num_threads() != count:
        torch.set_num_threads(count)
        logger.info("vllm-npu: %d torch thread(s) per host worker.", count)
