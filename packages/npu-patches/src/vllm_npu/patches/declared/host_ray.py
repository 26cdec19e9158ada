"""vLLM's Ray executor placing workers on CPUs (the host backend's Ray resource)."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from vllm_npu.patches.declaration import Patch
from vllm_npu.platform.version_gate import supported_vllm_specifier


def _ray_places_on_cpus() -> bool:
    """Ray is installed and the selected device backend's Ray resource is the CPU."""
    if importlib.util.find_spec("ray") is None:
        return False
    if os.environ.get("VLLM_NPU_DEVICE", "").strip().lower() in ("", "ascend"):
        # Ascend (chosen by default): its Ray resource is the NPU. Selecting the backend
        # here would start torch_npu in a process that may not be a worker.
        return False
    from vllm_npu.platform import DeviceBackendError, select_backend

    try:
        backend = select_backend().backend
    except DeviceBackendError:
        return False
    return backend is not None and backend.ray_device_key == "CPU"


def _actor_resources_on_cpus(original: Any) -> Any:
    def actor_resource_kwargs() -> dict[str, Any]:
        """No resource of the actor's own: its placement-group bundle holds its CPU."""
        return {"num_gpus": 0}

    actor_resource_kwargs.__wrapped__ = original.__func__  # type: ignore[attr-defined]
    return staticmethod(actor_resource_kwargs)


def _node_without_device_ids(original: Any) -> Any:
    def get_node_and_physical_gpu_ids(self: Any) -> tuple[str, list[int]]:
        """This actor's node; a CPU has no device ids for Ray to assign."""
        import ray

        return ray.get_runtime_context().get_node_id(), []

    get_node_and_physical_gpu_ids.__wrapped__ = original  # type: ignore[attr-defined]
    return get_node_and_physical_gpu_ids


_COMMON: dict[str, Any] = dict(
    # Every supported release (fingerprints checked on 0.28, 0.31, 0.32 and 0.33): the
    # fingerprint refuses a target that drifted.
    vllm_versions=supported_vllm_specifier(),
    upstream=(
        "none yet: vLLM's Ray executor assumes the platform's Ray resource is an "
        "accelerator (GPU, NPU, ...); to be proposed upstream together with vLLM's own "
        "CPU platform, which has no Ray support for the same reason"
    ),
    removal="Drop when vLLM's Ray executor handles a platform whose ray_device_key is CPU.",
    condition=_ray_places_on_cpus,
    condition_text="when Ray is installed and the device backend's Ray resource is CPU (host)",
    required=False,
)

HOST_RAY_PATCHES = (
    Patch(
        id="host-ray-actor-resources",
        processes=("engine_core",),
        target="vllm.v1.executor.ray_executor_v2:RayExecutorV2._get_actor_resource_kwargs",
        why=(
            "RayExecutorV2 asks Ray for resources={ray_device_key: 1} per worker actor; "
            "Ray refuses 'CPU' there ('Use the num_cpus and num_gpus keyword instead'), "
            "so no worker starts on the host backend."
        ),
        how=(
            "Ask for no resource of the actor's own: each actor already runs in its own "
            "placement-group bundle of {CPU: 1}, which reserves its CPU on its node."
        ),
        fingerprint="551e23d0f8bc1956",
        replacement=_actor_resources_on_cpus,
        **_COMMON,
    ),
    Patch(
        id="host-ray-worker-device-ids",
        processes=("worker",),
        target="vllm.v1.executor.ray_executor_v2:RayWorkerProc.get_node_and_physical_gpu_ids",
        why=(
            "The Ray worker looks its devices up in Ray's accelerator ids by "
            "ray_device_key; the CPU is not one of Ray's accelerators, so the lookup "
            "raises KeyError: 'CPU' in every worker on the host backend."
        ),
        how="Return the actor's node and no device ids (ranks index the CPU by local rank).",
        fingerprint="ae2a768ce40eed4c",
        replacement=_node_without_device_ids,
        **_COMMON,
    ),
)
