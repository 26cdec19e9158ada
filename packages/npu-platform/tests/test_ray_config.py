"""What the platform gives vLLM's Ray executor: the Ray resource, runtime env and refusals."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from vllm_npu.platform import _ray
from vllm_npu.platform._ascend import AscendBackend
from vllm_npu.platform._host import HostBackend

pytest.importorskip("ray", reason="Ray is the optional extra vllm-npu[ray]")


def _parallel(backend: str = "ray", runtime_env: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(distributed_executor_backend=backend, ray_runtime_env=runtime_env)


def test_ray_resources() -> None:
    assert (HostBackend.ray_device_key, AscendBackend.ray_device_key) == ("CPU", "NPU")


def test_other_executors_are_left_alone() -> None:
    parallel = _parallel("mp")
    _ray.configure(parallel, HostBackend())
    assert parallel.ray_runtime_env is None


@pytest.mark.parametrize("backend", [HostBackend(), AscendBackend()], ids=["host", "ascend"])
def test_ray_workers_get_the_backend_and_the_setup_hook(backend, monkeypatch) -> None:
    monkeypatch.delenv(_ray.LEGACY_EXECUTOR_ENV, raising=False)
    parallel = _parallel(runtime_env={"env_vars": {"MINE": "1"}, "pip": ["six"]})
    _ray.configure(parallel, backend)
    runtime_env = parallel.ray_runtime_env
    assert runtime_env["worker_process_setup_hook"] == _ray.SETUP_HOOK
    assert runtime_env["env_vars"] == {"MINE": "1", "VLLM_NPU_DEVICE": backend.name}
    assert runtime_env["pip"]["packages"] == ["six"]
    _ray.configure(parallel, backend)  # idempotent: the engine core sees the same config
    assert parallel.ray_runtime_env["worker_process_setup_hook"] == _ray.SETUP_HOOK


def test_the_setup_hook_resolves_and_runs_the_worker_hooks(monkeypatch) -> None:
    module, _, name = _ray.SETUP_HOOK.rpartition(".")
    assert getattr(importlib.import_module(module), name) is _ray.setup_worker_process
    ran: list[str] = []
    monkeypatch.setattr("vllm_npu.platform.hooks.run_process_hooks", ran.append)
    _ray.setup_worker_process()
    assert ran == ["worker"]


def test_the_setup_hook_runs_first_in_a_fresh_process() -> None:
    """As in a Ray worker: the hook's module is the first thing imported (on vLLM
    0.28-0.31, importing vLLM resolves the platform, whose module imports our hooks)."""
    module, _, name = _ray.SETUP_HOOK.rpartition(".")
    result = subprocess.run(
        [sys.executable, "-c", f"import {module} as m; m.{name}(); print('ran')"],
        capture_output=True,
        text=True,
        env={**os.environ, "VLLM_NPU_DEVICE": "host"},
        timeout=300,
    )
    assert result.returncode == 0 and "ran" in result.stdout, result.stderr[-3000:]


def test_another_setup_hook_is_refused() -> None:
    parallel = _parallel(runtime_env={"worker_process_setup_hook": "theirs.setup"})
    with pytest.raises(ValueError, match="already has a worker_process_setup_hook"):
        _ray.configure(parallel, HostBackend())


def test_the_legacy_executor_is_refused_on_the_host(monkeypatch) -> None:
    monkeypatch.setenv(_ray.LEGACY_EXECUTOR_ENV, "0")
    with pytest.raises(ValueError, match="cannot place workers on CPUs"):
        _ray.configure(_parallel(), HostBackend())


def test_missing_ray_names_the_extra(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    with pytest.raises(ValueError, match=r"pip install 'vllm-npu\[ray\]'"):
        _ray.configure(_parallel(), HostBackend())
