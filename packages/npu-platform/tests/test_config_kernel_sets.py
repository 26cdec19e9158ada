"""Config changes that follow the device backend's kernel set: the KV cache block
size the attention kernels require, and eager execution for the Ascend kernels."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from vllm.config import CacheConfig, CompilationConfig, CompilationMode, VllmConfig
from vllm.v1.attention.backend import MultipleOf

from vllm_npu.platform import _config
from vllm_npu.platform._host import HostBackend


@dataclass
class AscendKernels(HostBackend):
    """The host backend's device, the Ascend kernel set's needs."""

    name: str = "ascend-like"
    kernel_set: str = "ascend"


def test_default_block_size_becomes_the_kernels() -> None:
    config = VllmConfig()
    assert not config.cache_config.user_specified_block_size
    _config.adapt_block_size(config, [128])
    assert config.cache_config.block_size == 128


@pytest.mark.parametrize("supported", [[16, 128], [MultipleOf(8)], [MultipleOf(1)]])
def test_a_supported_block_size_is_kept(supported) -> None:
    config = VllmConfig(cache_config=CacheConfig(block_size=16))
    _config.adapt_block_size(config, supported)
    assert config.cache_config.block_size == 16


def test_a_chosen_unsupported_block_size_is_one_clear_error() -> None:
    config = VllmConfig(cache_config=CacheConfig(block_size=16))
    with pytest.raises(ValueError, match="block_size 16 is not supported .* --block-size 128"):
        _config.adapt_block_size(config, [128])


def test_ascend_kernels_run_eagerly_with_the_custom_ops() -> None:
    config = VllmConfig(compilation_config=CompilationConfig(mode=CompilationMode.VLLM_COMPILE))
    config.compilation_config.mode = CompilationMode.VLLM_COMPILE
    config.compilation_config.custom_ops = ["none"]
    _config.adapt_to_backend(config, AscendKernels())
    assert config.compilation_config.mode == CompilationMode.NONE
    assert config.compilation_config.custom_ops == ["all"]


def test_a_users_custom_op_choice_is_kept() -> None:
    config = VllmConfig(compilation_config=CompilationConfig(custom_ops=["none", "+rms_norm"]))
    _config.adapt_to_backend(config, AscendKernels())
    assert config.compilation_config.custom_ops == ["none", "+rms_norm"]
