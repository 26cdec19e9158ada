"""The host-ray patches: vLLM's Ray executor placing worker actors on CPUs."""

from __future__ import annotations

import pytest

from vllm_npu.patches import PatchManager, PatchStatus, fingerprint_of
from vllm_npu.patches.declared.host_ray import HOST_RAY_PATCHES

pytest.importorskip("ray", reason="Ray is the optional extra vllm-npu[ray]")


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VLLM_NPU_DEVICE", "host")
    monkeypatch.delenv("VLLM_NPU_DISABLE_PATCHES", raising=False)
    patches = PatchManager(HOST_RAY_PATCHES)
    yield patches
    patches.revert()


def _actor_options_problem(resource_kwargs: dict) -> str | None:
    """What Ray says about an actor with vLLM's options and these resources."""
    import ray

    class Probe:
        pass

    try:
        ray.remote(Probe).options(num_cpus=0, **resource_kwargs)
    except ValueError as error:
        return str(error)
    return None


@pytest.mark.parametrize("patch", HOST_RAY_PATCHES, ids=lambda p: p.id)
def test_fingerprints_match_the_installed_vllm(patch) -> None:
    from vllm_npu.patches import _target

    _, _, current = _target.resolve(patch.module, patch.qualname)
    assert fingerprint_of(current) == patch.fingerprint


def test_without_the_patch_ray_refuses_the_actors(manager) -> None:
    from vllm.v1.executor.ray_executor_v2 import RayExecutorV2

    problem = _actor_options_problem(RayExecutorV2._get_actor_resource_kwargs())
    assert problem is not None and "instead of 'CPU'" in problem


def test_with_the_patch_ray_accepts_them_and_revert_restores_a_staticmethod(manager) -> None:
    from vllm.v1.executor.ray_executor_v2 import RayExecutorV2

    outcomes = manager.apply("engine_core")  # its module is imported: applied at once
    assert {key: o.status for key, o in outcomes.items()} == {
        "host-ray-actor-resources": PatchStatus.APPLIED
    }
    assert _actor_options_problem(RayExecutorV2._get_actor_resource_kwargs()) is None
    manager.revert()
    assert isinstance(vars(RayExecutorV2)["_get_actor_resource_kwargs"], staticmethod)
    assert "CPU" in RayExecutorV2._get_actor_resource_kwargs()["resources"]


def test_needed_only_on_the_host_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm_npu.patches.declared import host_ray

    monkeypatch.setenv("VLLM_NPU_DEVICE", "ascend")
    assert host_ray._ray_places_on_cpus() is False  # Ascend unusable here: no backend
    monkeypatch.setenv("VLLM_NPU_DEVICE", "host")
    assert host_ray._ray_places_on_cpus() is True
