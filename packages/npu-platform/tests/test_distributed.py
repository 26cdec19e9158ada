"""The platform's side of distribution: device counts, Ray keys, too many ranks."""

from __future__ import annotations

import os

import pytest
from vllm.config import ParallelConfig, VllmConfig
from vllm.platforms import current_platform

from vllm_npu.platform._ascend import AscendBackend
from vllm_npu.platform._distributed import check_local_ranks
from vllm_npu.platform._host import HostBackend


class VisibleNPUs(AscendBackend):
    """The Ascend backend with a chosen number of visible NPUs (no torch_npu needed)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def device_count(self) -> int:
        return self.count


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})


def test_ascend_refuses_more_ranks_than_visible_npus() -> None:
    parallel = ParallelConfig(tensor_parallel_size=4, pipeline_parallel_size=2)
    with pytest.raises(ValueError) as raised:
        check_local_ranks(parallel, VisibleNPUs(4))
    message = str(raised.value)
    assert "8 ranks" in message and "4 NPU(s)" in message
    assert "ASCEND_RT_VISIBLE_DEVICES" in message and "\n" not in message


def test_ascend_accepts_ranks_that_fit() -> None:
    parallel = ParallelConfig(tensor_parallel_size=4, pipeline_parallel_size=2)
    check_local_ranks(parallel, VisibleNPUs(8))


@pytest.mark.parametrize("executor", ["ray", "external_launcher"])
def test_ranks_placed_by_ray_or_a_launcher_are_not_counted_here(executor: str) -> None:
    parallel = ParallelConfig(tensor_parallel_size=16)
    parallel.distributed_executor_backend = executor
    check_local_ranks(parallel, VisibleNPUs(8))


def test_host_runs_one_rank_per_core(two_cores) -> None:
    assert HostBackend().device_count() == 2
    check_local_ranks(ParallelConfig(tensor_parallel_size=2), HostBackend())
    with pytest.raises(ValueError, match="at most one per CPU core") as raised:
        check_local_ranks(
            ParallelConfig(tensor_parallel_size=2, pipeline_parallel_size=2),
            HostBackend(),
        )
    assert "tensor_parallel_size" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_engine_config_refuses_too_many_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    with pytest.raises(ValueError, match="this node would run 2 ranks"):
        VllmConfig(parallel_config=ParallelConfig(tensor_parallel_size=2))


def test_platform_distribution_settings(two_cores) -> None:
    assert current_platform.dist_backend == "gloo"
    assert current_platform.device_count() == 2
    assert current_platform.ray_noset_device_env_vars == []
    assert AscendBackend.dist_backend == "hccl"
    assert AscendBackend.ray_device_key == "NPU"
    assert AscendBackend.device_control_env_var == "ASCEND_RT_VISIBLE_DEVICES"
    # vLLM's Ray executor picks each worker's NPU by local rank, so Ray must
    # leave ASCEND_RT_VISIBLE_DEVICES alone.
    assert AscendBackend.ray_noset_device_env_vars == (
        "RAY_EXPERIMENTAL_NOSET_ASCEND_RT_VISIBLE_DEVICES",
    )
