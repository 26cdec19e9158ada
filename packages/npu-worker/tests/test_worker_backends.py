"""What the worker takes from the device backend: the model runner of its kernel
set, and the KV cache size on NPUs (device memory after a profiling run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from vllm_npu.platform._host import HostBackend
from vllm_npu.platform.ascend import AscendBackend
from vllm_npu.worker import npu_worker

GIB = 1 << 30


def test_runner_follows_the_kernel_set() -> None:
    from vllm_npu.worker.ascend_model_runner import AscendModelRunner
    from vllm_npu.worker.host_model_runner import HostModelRunner

    assert npu_worker._runner_class(HostBackend()) is HostModelRunner
    assert npu_worker._runner_class(AscendBackend()) is AscendModelRunner


@dataclass
class Device:
    """An NPU whose memory use grows when the profiling run executes."""

    total: int = 64 * GIB
    used: int = 10 * GIB
    activations: int = 6 * GIB
    calls: list[str] = field(default_factory=list)

    def profile_run(self) -> None:
        self.calls.append("profile_run")
        self.used += self.activations

    def synchronize(self) -> None:
        self.calls.append("synchronize")

    def mem_get_info(self, index: int = 0) -> tuple[int, int]:
        self.calls.append(f"mem_get_info({index})")
        return self.total - self.used, self.total


def _worker(device: Device, utilization: float, requested: int | None = None):
    return SimpleNamespace(
        cache_config=SimpleNamespace(
            kv_cache_memory_bytes=requested, gpu_memory_utilization=utilization
        ),
        model_runner=device,
        device_backend=device,
        device=SimpleNamespace(index=1),
    )


def test_npu_kv_cache_is_the_budget_left_after_profiling() -> None:
    device = Device()
    size = npu_worker.NPUWorker._npu_kv_cache_bytes(_worker(device, 0.9))
    assert size == int(64 * GIB * 0.9) - 16 * GIB
    assert device.calls == ["profile_run", "synchronize", "mem_get_info(1)"]


def test_configured_kv_cache_size_wins_without_profiling() -> None:
    device = Device()
    assert npu_worker.NPUWorker._npu_kv_cache_bytes(_worker(device, 0.9, 3 * GIB)) == 3 * GIB
    assert device.calls == []


def test_no_memory_left_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="no NPU memory is left for the KV cache"):
        npu_worker.NPUWorker._npu_kv_cache_bytes(_worker(Device(used=60 * GIB), 0.9))


def test_npu_kv_cache_from_the_standin_device_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sizing on the Ascend backend's own device API (the stand-in's torch.npu
    with a fixed 32 GiB NPU, 28 GiB free after the profiling run)."""
    from vllm_npu.testing import standin

    monkeypatch.setenv(standin.DEVICES_ENV, "2")
    monkeypatch.setenv("VLLM_NPU_STANDIN_MEMORY_TOTAL", str(32 * GIB))
    monkeypatch.setenv("VLLM_NPU_STANDIN_MEMORY_FREE", str(28 * GIB))
    profiled: list[str] = []
    with standin.installed() as torch_npu:
        worker = SimpleNamespace(
            cache_config=SimpleNamespace(kv_cache_memory_bytes=None, gpu_memory_utilization=0.9),
            model_runner=SimpleNamespace(profile_run=lambda: profiled.append("profile_run")),
            device_backend=AscendBackend(),
            device=SimpleNamespace(index=1),
        )
        size = npu_worker.NPUWorker._npu_kv_cache_bytes(worker)
        assert torch_npu.npu.devices_touched() == {0, 1}
    assert profiled == ["profile_run"]
    assert size == int(32 * GIB * 0.9) - 4 * GIB
    # What vLLM makes of it for a 2-layer model with 2 KV heads of 16 in float16 and
    # the ascend kernels' 128-token blocks.
    import torch
    from vllm.v1.kv_cache_interface import FullAttentionSpec

    spec = FullAttentionSpec(block_size=128, num_kv_heads=2, head_size=16, dtype=torch.float16)
    assert size // (spec.page_size_bytes * 2) == 812_646
