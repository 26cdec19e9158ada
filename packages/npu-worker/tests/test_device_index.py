"""Which node-local device a worker takes: its engine's data-parallel rank on the node
offsets its local rank, as in vLLM's GPU worker, except where Ray or an external
launcher placed the ranks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from vllm.config import ParallelConfig

from vllm_npu.worker._compat import local_device_index

CASES = [
    (dict(tensor_parallel_size=2), [0, 1]),
    (dict(data_parallel_size=2, data_parallel_rank=1, data_parallel_rank_local=1), [1]),
    (
        dict(
            data_parallel_size=2,
            data_parallel_rank=1,
            data_parallel_rank_local=1,
            tensor_parallel_size=2,
        ),
        [2, 3],
    ),
    (
        dict(
            data_parallel_size=2,
            data_parallel_rank=1,
            data_parallel_rank_local=1,
            distributed_executor_backend="ray",
        ),
        [0],
    ),
]
FIELDS = (
    "distributed_executor_backend",
    "data_parallel_backend",
    "nnodes_within_dp",
    "data_parallel_rank_local",
    "data_parallel_index",
    "world_size",
)


@pytest.mark.parametrize(("settings", "devices"), CASES, ids=["tp2", "dp-rank-1", "dp1-tp2", "ray"])
def test_each_data_parallel_engine_on_a_node_has_devices_of_its_own(
    settings: dict, devices: list[int]
) -> None:
    parallel = ParallelConfig(**settings)
    ranks = range(parallel.world_size)
    assert [local_device_index(parallel, rank) for rank in ranks] == devices
    # The releases before ParallelConfig.get_local_gpu_index (0.28 to 0.32) compute
    # it from the same fields, as their GPU worker did.
    before = SimpleNamespace(**{field: getattr(parallel, field) for field in FIELDS})
    assert [local_device_index(before, rank) for rank in ranks] == devices  # type: ignore[arg-type]
