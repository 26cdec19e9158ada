"""The host-accelerator patches: vLLM's torch.accelerator calls on a CPU-only torch."""

from __future__ import annotations

import pytest
import torch

from vllm_npu.patches import DECLARED_PATCHES, PatchManager, PatchStatus, fingerprint_of
from vllm_npu.patches.declared.host_accelerator import HOST_ACCELERATOR_PATCHES


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("VLLM_NPU_DISABLE_PATCHES", raising=False)
    patches = PatchManager(HOST_ACCELERATOR_PATCHES)
    yield patches
    patches.revert()


@pytest.mark.parametrize("patch", HOST_ACCELERATOR_PATCHES, ids=lambda p: p.id)
def test_fingerprints_match_the_installed_torch(patch) -> None:
    module, _, name = patch.target.partition(":")
    assert fingerprint_of(getattr(torch.accelerator, name)) == patch.fingerprint


def test_without_the_patches_vllm_shutdown_calls_raise() -> None:
    # CPU torch has no accelerator; a CUDA build names cuda but has no GPU here.
    assert not torch.accelerator.is_available()
    with pytest.raises(RuntimeError, match="none is available|no NVIDIA driver"):
        torch.accelerator.synchronize()


def test_with_the_patches_they_do_nothing(manager) -> None:
    outcomes = manager.apply("engine_core")
    assert {o.status for o in outcomes.values()} == {PatchStatus.APPLIED}
    torch.accelerator.empty_host_cache()
    torch.accelerator.empty_cache()
    torch.accelerator.synchronize()
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

    cleanup_dist_env_and_memory()  # what the engine core runs at shutdown


def test_every_declaration_says_why_how_and_how_it_goes_away() -> None:
    for patch in DECLARED_PATCHES:
        assert patch.why and patch.how and patch.upstream and patch.removal, patch.id
        assert set(patch.processes) <= {"platform", "worker", "engine_core"}, patch.id
