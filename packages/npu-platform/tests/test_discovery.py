"""Finding worker, attention backend and communicator through our entry point groups."""

from __future__ import annotations

import pytest

from vllm_npu.platform import discovery
from vllm_npu.platform.discovery import ComponentError, ComponentKind


def test_default_components_are_ours(clean_env) -> None:
    assert discovery.qualname(discovery.WORKER) == "vllm_npu.worker.npu_worker.NPUWorker"
    assert (
        discovery.qualname(discovery.ATTENTION_BACKEND)
        == "vllm_npu.attention.backend.NPUAttentionBackend"
    )
    assert (
        discovery.qualname(discovery.COMMUNICATOR)
        == "vllm_npu.comm.communicator.NPUCommunicator"
    )


def test_missing_component_names_the_distribution_to_install(clean_env) -> None:
    absent = ComponentKind("worker", "vllm_npu.no_such_group", "VLLM_NPU_X", "vllm-npu-worker")
    with pytest.raises(ComponentError) as raised:
        discovery.find(absent)
    message = str(raised.value)
    assert "pip install vllm-npu-worker" in message
    assert "\n" not in message


def test_unknown_name_lists_what_is_registered(clean_env) -> None:
    clean_env.setenv("VLLM_NPU_ATTENTION_BACKEND", "flash")
    expected = r"Unknown attention backend 'flash' \(registered: .*npu"
    with pytest.raises(ComponentError, match=expected):
        discovery.find(discovery.ATTENTION_BACKEND)


def test_component_that_fails_to_import_is_named(clean_env, install_distribution) -> None:
    install_distribution(
        "researcher-broken",
        {"vllm_npu.attention_backends": {"broken": "researcher_missing_module:Backend"}},
    )
    with pytest.raises(ComponentError, match="'broken'.*researcher-broken.*failed to import"):
        discovery.qualname(discovery.ATTENTION_BACKEND, "broken")


def test_configured_name_wins_over_environment(clean_env) -> None:
    clean_env.setenv("VLLM_NPU_ATTENTION_BACKEND", "from_env")
    assert discovery.requested_name(discovery.ATTENTION_BACKEND, "from_config") == "from_config"
    assert discovery.requested_name(discovery.ATTENTION_BACKEND) == "from_env"
    clean_env.delenv("VLLM_NPU_ATTENTION_BACKEND")
    assert discovery.requested_name(discovery.ATTENTION_BACKEND) == "npu"
