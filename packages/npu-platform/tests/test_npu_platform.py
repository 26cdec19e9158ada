"""NPUPlatform on the host backend: what vLLM asks of it."""

from __future__ import annotations

import logging

import pytest
import torch
from vllm.config import (
    CompilationConfig,
    CompilationMode,
    CUDAGraphMode,
    ParallelConfig,
    SchedulerConfig,
    VllmConfig,
    set_current_vllm_config,
)
from vllm.platforms import current_platform
from vllm.v1.attention.backends.registry import AttentionBackendEnum
from vllm.v1.attention.selector import AttentionSelectorConfig

from vllm_npu.platform import _config
from vllm_npu.platform.npu_platform import NPUPlatform

RESEARCHER_BACKEND = """
from vllm_npu.attention import NPUAttentionBackend

class ResearcherBackend(NPUAttentionBackend):
    pass
"""


def _selector(**overrides) -> AttentionSelectorConfig:
    fields = dict(head_size=64, dtype=torch.float32, kv_cache_dtype="auto", block_size=16)
    return AttentionSelectorConfig(**{**fields, **overrides})


def _attention_backend(additional_config: dict | None = None, **selector) -> str:
    with set_current_vllm_config(VllmConfig(additional_config=additional_config or {})):
        return NPUPlatform.get_attn_backend_cls(
            AttentionBackendEnum.CUSTOM, _selector(**selector)
        )


def test_vllm_resolves_our_platform_on_host() -> None:
    assert isinstance(current_platform, NPUPlatform)
    assert current_platform.is_out_of_tree()
    assert current_platform.device_type == "cpu"
    assert current_platform.dist_backend == "gloo"
    assert not current_platform.is_pin_memory_available()
    assert current_platform.opaque_attention_op()
    free, total = current_platform.mem_get_info()
    assert 0 < free <= total == current_platform.get_device_total_memory()


def test_default_attention_backend(clean_env) -> None:
    assert _attention_backend() == "vllm_npu.attention.backend.NPUAttentionBackend"


@pytest.fixture
def researcher_backend(clean_env, install_distribution) -> None:
    """A third-party distribution registering the attention backend ``mine``."""
    install_distribution(
        "researcher-attention",
        {"vllm_npu.attention_backends": {"mine": "researcher_attention:ResearcherBackend"}},
        {"researcher_attention.py": RESEARCHER_BACKEND},
    )


def test_researcher_backend_by_environment(clean_env, researcher_backend) -> None:
    clean_env.setenv("VLLM_NPU_ATTENTION_BACKEND", "mine")
    assert _attention_backend() == "researcher_attention.ResearcherBackend"


def test_researcher_backend_by_additional_config(researcher_backend) -> None:
    chosen = _attention_backend({"attention_backend": "mine"})
    assert chosen == "researcher_attention.ResearcherBackend"


@pytest.mark.parametrize(
    ("selector", "reason"),
    [
        ({"dtype": torch.int8}, "dtype not supported"),
        ({"kv_cache_dtype": "fp8"}, "kv_cache_dtype not supported"),
        ({"attn_type": "encoder_only"}, "attention type encoder_only not supported"),
    ],
)
def test_unsupported_model_features_are_one_clear_error(clean_env, selector, reason) -> None:
    with pytest.raises(ValueError) as raised:
        _attention_backend(**selector)
    message = str(raised.value)
    assert reason in message and "VLLM_NPU_ATTENTION_BACKEND" in message
    assert "\n" not in message


def test_mla_models_get_the_mla_backend(clean_env) -> None:
    assert _attention_backend(use_mla=True) == "vllm_npu.attention.mla.NPUMLABackend"


def test_mla_backend_is_replaceable_by_its_own_name(clean_env, researcher_backend) -> None:
    """The MLA kind has a name of its own: choosing a standard backend leaves MLA alone."""
    clean_env.setenv("VLLM_NPU_ATTENTION_BACKEND", "mine")
    assert _attention_backend(use_mla=True) == "vllm_npu.attention.mla.NPUMLABackend"
    with pytest.raises(ValueError, match="'mine' cannot run this model \\(MLA not supported\\)"):
        _attention_backend({"mla_attention_backend": "mine"}, use_mla=True)
    clean_env.setenv("VLLM_NPU_MLA_ATTENTION_BACKEND", "mine")
    with pytest.raises(ValueError, match="VLLM_NPU_MLA_ATTENTION_BACKEND"):
        _attention_backend(use_mla=True)


@pytest.mark.parametrize(
    ("selector", "reason"),
    [
        ({"use_sparse": True}, "sparse not supported"),
        ({"kv_cache_dtype": "fp8"}, "kv_cache_dtype not supported"),
    ],
)
def test_unsupported_mla_features_are_one_clear_error(clean_env, selector, reason) -> None:
    with pytest.raises(ValueError) as raised:
        _attention_backend(use_mla=True, head_size=576, **selector)
    message = str(raised.value)
    assert reason in message and "VLLM_NPU_MLA_ATTENTION_BACKEND" in message
    assert "\n" not in message


def test_mla_prefill_backend_comes_from_the_mla_attention_backend(clean_env) -> None:
    from vllm_npu.attention.mla import NPUMLAPrefillBackend

    with set_current_vllm_config(VllmConfig()):
        assert NPUPlatform.get_mla_prefill_backend_cls(None) is NPUMLAPrefillBackend


def test_config_checks_turn_off_what_the_host_cannot_do(caplog) -> None:
    _config.announced.clear()
    with caplog.at_level(logging.INFO, logger="vllm"):
        config = VllmConfig(
            compilation_config=CompilationConfig(
                mode=CompilationMode.VLLM_COMPILE,
                cudagraph_mode=CUDAGraphMode.FULL_AND_PIECEWISE,
            ),
            scheduler_config=SchedulerConfig(
                async_scheduling=True, max_model_len=1024, is_encoder_decoder=False
            ),
            parallel_config=ParallelConfig(disable_custom_all_reduce=False),
        )
    assert config.parallel_config.worker_cls == "vllm_npu.worker.npu_worker.NPUWorker"
    assert config.compilation_config.cudagraph_mode == CUDAGraphMode.NONE
    assert not config.compilation_config.cudagraph_capture_sizes
    assert config.compilation_config.mode == CompilationMode.DYNAMO_TRACE_ONCE
    inductor = config.compilation_config.inductor_compile_config
    assert inductor["size_asserts"] is False and inductor["nan_asserts"] is False
    assert config.scheduler_config.async_scheduling is False
    assert config.parallel_config.disable_custom_all_reduce is True
    pass_config = config.compilation_config.pass_config
    assert not any(getattr(pass_config, n) for n in vars(pass_config) if n.startswith("fuse_"))
    assert caplog.text.count("vllm-npu: async scheduling turned off") == 1
    caplog.clear()
    VllmConfig(scheduler_config=SchedulerConfig(
        async_scheduling=True, max_model_len=1024, is_encoder_decoder=False
    ))
    assert "turned off" not in caplog.text, "each change is logged once per process"


def test_our_environment_variables_are_not_unknown_to_vllm(clean_env, caplog) -> None:
    clean_env.setenv("VLLM_NPU_ATTENTION_BACKEND", "npu")
    clean_env.setenv("VLLM_NOT_A_REAL_SETTING", "1")
    with caplog.at_level(logging.WARNING, logger="vllm"):
        NPUPlatform.validate_environ(hard_fail=False)
    assert "VLLM_NOT_A_REAL_SETTING" in caplog.text
    assert "VLLM_NPU_ATTENTION_BACKEND" not in caplog.text
    with pytest.raises(ValueError, match="VLLM_NOT_A_REAL_SETTING"):
        NPUPlatform.validate_environ(hard_fail=True)
