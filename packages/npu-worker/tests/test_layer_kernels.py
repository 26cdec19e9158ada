"""The layer kernel sets of vllm_npu.worker.kernels: the reference ops compute what
vLLM's native layers do, the ascend ops (on the torch_npu stand-in) what the
reference ops do, and both are registered behind the one protocol."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.model_executor.layers.activation import SiluAndMul
from vllm.model_executor.layers.layernorm import RMSNorm
from vllm.model_executor.layers.rotary_embedding import RotaryEmbedding

from vllm_npu.platform.kernel_sets import KernelSets
from vllm_npu.testing.standin import installed
from vllm_npu.worker import kernels
from vllm_npu.worker.kernels import LayerKernels, available_layer_kernels, get_layer_kernels

REFERENCE = get_layer_kernels("reference")
ASCEND = get_layer_kernels("ascend")
HALF = {"atol": 5e-3, "rtol": 5e-3}


@pytest.fixture(scope="module", autouse=True)
def vllm_config() -> Iterator[None]:
    with set_current_vllm_config(VllmConfig()):
        yield


@pytest.fixture(scope="module")
def standin() -> Iterator[None]:
    with installed():
        yield


def test_both_sets_are_registered_behind_the_protocol() -> None:
    assert {"reference", "ascend"} <= set(available_layer_kernels())
    assert isinstance(REFERENCE, LayerKernels) and isinstance(ASCEND, LayerKernels)
    assert (REFERENCE.name, ASCEND.name) == ("reference", "ascend")
    with pytest.raises(ValueError, match="unknown layer kernel set 'nope'; registered: "):
        get_layer_kernels("nope")


def test_a_set_lacking_an_op_is_refused_by_name() -> None:
    class NormOnly:
        name = "norm-only"
        rms_norm = staticmethod(REFERENCE.rms_norm)

    registry = KernelSets("layer", LayerKernels, "vllm_npu.worker.kernels.LayerKernels")
    with pytest.raises(TypeError, match="lacks fused_add_rms_norm, silu_and_mul, rotary_emb"):
        registry.register("norm-only", NormOnly())  # type: ignore[arg-type]
    registry.register("reference", REFERENCE)
    registry.register("reference", REFERENCE)
    with pytest.raises(ValueError, match="layer kernel set 'reference' is already registered"):
        registry.register("reference", kernels._reference_layers.ReferenceLayerKernels())
    assert registry.names() == ("reference",)


def test_reference_ops_are_vllms_native_layers() -> None:
    x, residual = torch.randn(2, 7, 64).unbind(0)
    norm = RMSNorm(64, eps=1e-5)
    norm.weight.data = torch.randn(64)
    weight = norm.weight.data
    torch.testing.assert_close(REFERENCE.rms_norm(x, weight, 1e-5), norm.forward_native(x))
    expected = norm.forward_native(x.clone(), residual.clone())
    actual = REFERENCE.fused_add_rms_norm(x, residual, weight, 1e-5)
    for ours, theirs in zip(actual, expected, strict=True):
        torch.testing.assert_close(ours, theirs)

    gate_up = torch.randn(7, 128)
    expected_swiglu = SiluAndMul().forward_native(gate_up)
    torch.testing.assert_close(REFERENCE.silu_and_mul(gate_up), expected_swiglu)

    for rotary_dim in (32, 16):
        rope = RotaryEmbedding(32, rotary_dim, 256, 10000.0, True, torch.float32)
        positions = torch.randint(0, 256, (7,))
        query, key = torch.randn(7, 4 * 32), torch.randn(7, 2 * 32)
        expected = rope.forward_native(positions, query.clone(), key.clone())
        actual = REFERENCE.rotary_embedding_neox(
            positions, query, key, rope.cos_sin_cache, 32, rotary_dim
        )
        for ours, theirs in zip(actual, expected, strict=True):
            torch.testing.assert_close(ours, theirs)


def test_reference_rotary_factors_follow_their_cache() -> None:
    # The factors laid out per cache are laid out again once the cache is written to.
    cache = torch.randn(64, 16)
    positions = torch.randint(0, 64, (5,))
    query, key = torch.randn(5, 2 * 16), torch.randn(5, 16)
    before = REFERENCE.rotary_embedding_neox(positions, query, key, cache, 16, 16)
    cache.mul_(0.5)
    after = REFERENCE.rotary_embedding_neox(positions, query, key, cache, 16, 16)
    fresh = REFERENCE.rotary_embedding_neox(positions, query, key, cache.clone(), 16, 16)
    for ours, theirs in zip(after, fresh, strict=True):
        assert torch.equal(ours, theirs)
    assert not torch.equal(before[0], after[0])


@pytest.mark.usefixtures("standin")
def test_ascend_ops_compute_the_reference() -> None:
    dtype = torch.float16
    x, residual = torch.randn(2, 9, 64, dtype=dtype).unbind(0)
    weight = torch.randn(64, dtype=dtype)
    torch.testing.assert_close(
        ASCEND.rms_norm(x, weight, 1e-6), REFERENCE.rms_norm(x, weight, 1e-6), **HALF
    )
    for ours, theirs in zip(
        ASCEND.fused_add_rms_norm(x, residual, weight, 1e-6),
        REFERENCE.fused_add_rms_norm(x, residual, weight, 1e-6),
        strict=True,
    ):
        torch.testing.assert_close(ours, theirs, **HALF)
    gate_up = torch.randn(9, 128, dtype=dtype)
    torch.testing.assert_close(
        ASCEND.silu_and_mul(gate_up), REFERENCE.silu_and_mul(gate_up), **HALF
    )
    positions = torch.randint(0, 256, (9,))
    query, key = torch.randn(9, 4 * 64, dtype=dtype), torch.randn(9, 2 * 64, dtype=dtype)
    for rotary_dim in (64, 32):
        cache = torch.randn(256, rotary_dim, dtype=dtype)
        for ours, theirs in zip(
            ASCEND.rotary_embedding_neox(positions, query, key, cache, 64, rotary_dim),
            REFERENCE.rotary_embedding_neox(positions, query, key, cache, 64, rotary_dim),
            strict=True,
        ):
            torch.testing.assert_close(ours, theirs, **HALF)
