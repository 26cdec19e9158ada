"""The mla-prefill-backend patch: before vLLM 0.32 an MLA layer's prefill backend is
chosen without asking the platform (FlashAttention's, which does not import off CUDA);
patched, it is the one our MLA attention backend names, as 0.32+ asks the platform."""

from __future__ import annotations

import pytest
from packaging.specifiers import SpecifierSet

from vllm_npu.patches import PatchManager, PatchStatus, fingerprint_of
from vllm_npu.patches.declared.mla_prefill_backend import MLA_PREFILL_BACKEND_PATCHES
from vllm_npu.platform.versions import vllm_version

(PATCH,) = MLA_PREFILL_BACKEND_PATCHES


def _in_range() -> bool:
    release = vllm_version().release
    return release is not None and release in SpecifierSet(PATCH.vllm_versions)


def test_the_range_is_exactly_the_releases_without_the_platform_hook() -> None:
    from vllm.platforms.interface import Platform

    assert hasattr(Platform, "get_mla_prefill_backend_cls") != _in_range()
    assert PATCH.condition is not None and PATCH.condition() == _in_range()


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VLLM_NPU_DEVICE", "host")
    monkeypatch.delenv("VLLM_NPU_DISABLE_PATCHES", raising=False)
    patches = PatchManager(MLA_PREFILL_BACKEND_PATCHES)
    yield patches
    patches.revert()


@pytest.mark.skipif(not _in_range(), reason="the installed vLLM asks the platform itself")
def test_fingerprint_is_a_known_one() -> None:
    from vllm.model_executor.layers.attention import mla_attention

    assert fingerprint_of(mla_attention.get_mla_prefill_backend) in (
        PATCH.fingerprint,
        *PATCH.known_fingerprints,
    )


@pytest.mark.skipif(not _in_range(), reason="the installed vLLM asks the platform itself")
def test_unpatched_vllm_picks_flash_attention_and_patched_it_asks_our_platform(
    manager,
) -> None:
    from vllm.config import VllmConfig, set_current_vllm_config
    from vllm.model_executor.layers.attention import mla_attention
    from vllm.platforms import current_platform

    # Our platform reports no device capability, so vLLM's selector returns
    # FlashAttention's backend before it reads the config.
    config = VllmConfig()
    original = mla_attention.get_mla_prefill_backend
    with pytest.raises(ImportError, match="compile_flash_attn_varlen_func_from_specs"):
        original(config)

    outcomes = manager.apply("worker")
    assert {o.status for o in outcomes.values()} == {PatchStatus.APPLIED}
    with set_current_vllm_config(config):  # as while vLLM builds the layers
        ours = mla_attention.get_mla_prefill_backend(config)
        assert ours is current_platform.get_mla_prefill_backend_cls(None)
    assert ours.__module__.startswith("vllm_npu.")
    manager.revert()
    assert mla_attention.get_mla_prefill_backend is original
