"""vLLM's Ray executor on our device backends: what its worker processes need.

A Ray worker starts from its Ray node's environment, not from the engine's, and
vLLM asks it for its devices before our worker runs there. So the job's runtime
environment carries the device backend the engine selected (``VLLM_NPU_DEVICE``)
and a setup hook that runs the ``worker`` process hooks (our patches) as each
Ray worker process starts. Ray itself stays optional: ``pip install 'vllm-npu[ray]'``.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

from vllm_npu.platform import _env

if TYPE_CHECKING:
    from vllm.config import ParallelConfig

    from vllm_npu.platform.device import DeviceBackend

SETUP_HOOK = "vllm_npu.platform._ray.setup_worker_process"
"""Ray's ``worker_process_setup_hook`` for the workers of an engine of ours."""

LEGACY_EXECUTOR_ENV = "VLLM_USE_RAY_V2_EXECUTOR_BACKEND"


def uses_ray(parallel: ParallelConfig) -> bool:
    return parallel.distributed_executor_backend == "ray"


def configure(parallel: ParallelConfig, backend: DeviceBackend) -> None:
    """Refuse what cannot run, then give Ray's workers our backend and setup hook."""
    if not uses_ray(parallel):
        return
    if importlib.util.find_spec("ray") is None:
        raise ValueError(
            "vllm-npu: distributed_executor_backend='ray' but Ray is not installed; "
            "pip install 'vllm-npu[ray]' (or ray), or use the multiprocessing executor."
        )
    if backend.ray_device_key == "CPU" and os.environ.get(LEGACY_EXECUTOR_ENV, "1") == "0":
        raise ValueError(
            f"vllm-npu: {LEGACY_EXECUTOR_ENV}=0 selects vLLM's legacy Ray executor, which "
            f"cannot place workers on CPUs (the {backend.name} backend); unset it."
        )
    from ray.runtime_env import RuntimeEnv

    runtime_env = dict(parallel.ray_runtime_env or {})
    hook = runtime_env.get("worker_process_setup_hook")
    if hook not in (None, SETUP_HOOK):
        raise ValueError(
            f"vllm-npu: the Ray runtime environment already has a worker_process_setup_hook "
            f"({hook}); vllm-npu sets its own ({SETUP_HOOK}) to prepare each Ray worker: "
            "remove yours from the runtime environment."
        )
    env_vars = {**runtime_env.get("env_vars", {}), _env.DEVICE: backend.name}
    parallel.ray_runtime_env = RuntimeEnv(
        **{**runtime_env, "env_vars": env_vars, "worker_process_setup_hook": SETUP_HOOK}
    )


def setup_worker_process() -> None:
    """Ray's setup hook in each worker process of our engine, before vLLM runs there."""
    # vLLM first: importing it may resolve the platform (vLLM 0.28-0.31 do, at import),
    # whose module imports our hooks; importing the hooks first makes that a cycle.
    import vllm  # noqa: F401

    from vllm_npu.platform.hooks import run_process_hooks

    run_process_hooks("worker")
