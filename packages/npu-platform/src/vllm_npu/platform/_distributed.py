"""How many ranks a node may run on the selected device backend.

vLLM checks this only for CUDA; for us a rank without a device would fail late
and obscurely (an NPU index out of range inside a worker), so the platform
refuses such a configuration up front with one line that says what to change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vllm.config import ParallelConfig

    from vllm_npu.platform.device import DeviceBackend

# Ray places each rank on a node with a free device of its own (resource key
# ``ray_device_key``); an external launcher starts one process per rank itself.
_PLACED_ELSEWHERE = ("ray", "external_launcher")


def check_local_ranks(parallel: ParallelConfig, backend: DeviceBackend) -> None:
    """Refuse (ValueError) more ranks on this node than the backend has devices."""
    if (
        parallel.distributed_executor_backend in _PLACED_ELSEWHERE
        or parallel.data_parallel_backend == "ray"
    ):
        return
    # This node's share of one replica's ranks, times its replicas.
    ranks = parallel.local_world_size * parallel.data_parallel_size_local
    devices = backend.device_count()
    if ranks <= devices:
        return
    if backend.name == "host":
        raise ValueError(
            f"vllm-npu: this node would run {ranks} ranks but the host backend runs "
            f"at most one per CPU core and this process may use {devices}; lower "
            "tensor_parallel_size, pipeline_parallel_size or data_parallel_size_local."
        )
    raise ValueError(
        f"vllm-npu: this node would run {ranks} ranks but only {devices} NPU(s) are "
        f"visible; list {ranks} NPUs in {backend.device_control_env_var}, lower "
        "tensor_parallel_size, pipeline_parallel_size or data_parallel_size_local, "
        "or spread the ranks over nodes (--nnodes with --master-addr, or Ray)."
    )
