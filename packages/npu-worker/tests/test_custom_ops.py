"""The layer custom ops: Ascend path (on the torch_npu stand-in) against vLLM's native code."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import torch
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.model_executor.custom_op import op_registry, op_registry_oot
from vllm.model_executor.layers.activation import SiluAndMul
from vllm.model_executor.layers.layernorm import RMSNorm
from vllm.model_executor.layers.rotary_embedding import RotaryEmbedding
from vllm.platforms import current_platform

from vllm_npu.testing.standin import installed
from vllm_npu.worker.custom_ops import (
    ASCEND_KERNEL_SET,
    CUSTOM_OP_NAMES,
    REFERENCE_KERNEL_SET,
    NPURMSNorm,
    NPURotaryEmbedding,
    NPUSiluAndMul,
    current_kernel_set,
    register_custom_ops,
)

DTYPES = [torch.float16, torch.bfloat16, torch.float32]
TOLERANCES = {
    torch.float16: {"atol": 5e-3, "rtol": 5e-3},
    torch.bfloat16: {"atol": 3e-2, "rtol": 3e-2},
    torch.float32: {"atol": 1e-5, "rtol": 1e-5},
}
LAYER_OPS = ("npu_rms_norm", "npu_add_rms_norm", "npu_rotary_mul", "npu_swiglu")


@pytest.fixture(scope="module")
def vllm_config() -> Iterator[VllmConfig]:
    """A current vLLM config that enables exactly our ops, by their names."""
    config = VllmConfig()
    config.compilation_config.custom_ops = ["none", *(f"+{name}" for name in CUSTOM_OP_NAMES)]
    with set_current_vllm_config(config):
        yield config


@pytest.fixture(autouse=True)
def registered(vllm_config: VllmConfig) -> Iterator[None]:
    """Our ops registered for the test; vLLM's out-of-tree registry restored after."""
    saved = dict(op_registry_oot)
    register_custom_ops()
    yield
    op_registry_oot.clear()
    op_registry_oot.update(saved)


@pytest.fixture(scope="module")
def standin() -> Iterator[ModuleType]:
    with installed() as torch_npu:
        yield torch_npu


@pytest.fixture
def npu_calls(standin: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often each stand-in layer op ran (each still computes its result)."""
    calls: Counter[str] = Counter()

    def counting(name: str, op: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return op(*args, **kwargs)

        return run

    for name in LAYER_OPS:
        monkeypatch.setattr(standin, name, counting(name, getattr(standin, name)))
    return calls


def use_kernel_set(monkeypatch: pytest.MonkeyPatch, kernel_set: str) -> None:
    monkeypatch.setattr(current_platform, "backend", SimpleNamespace(kernel_set=kernel_set))


@pytest.fixture
def ascend(monkeypatch: pytest.MonkeyPatch, npu_calls: Counter[str]) -> Counter[str]:
    """The platform's device backend uses the Ascend kernel set (on the stand-in)."""
    use_kernel_set(monkeypatch, ASCEND_KERNEL_SET)
    return npu_calls


@pytest.fixture
def reference(monkeypatch: pytest.MonkeyPatch, npu_calls: Counter[str]) -> Counter[str]:
    use_kernel_set(monkeypatch, REFERENCE_KERNEL_SET)
    return npu_calls


def rms_norm(hidden_size: int, dtype: torch.dtype, **kwargs: Any) -> RMSNorm:
    norm = RMSNorm(hidden_size, eps=1e-5, dtype=dtype, **kwargs)
    norm.weight.data = torch.randn(hidden_size, dtype=dtype)
    return norm


def rope(head_size: int, rotary_dim: int, dtype: torch.dtype, neox: bool = True) -> RotaryEmbedding:
    return RotaryEmbedding(head_size, rotary_dim, 256, 10000.0, neox, dtype)


def qkv_split(
    num_tokens: int, num_heads: int, num_kv_heads: int, head_size: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """query [T, heads * head_size] and key [T, kv_heads * head_size], views of one qkv."""
    sizes = [num_heads * head_size, num_kv_heads * head_size, num_kv_heads * head_size]
    qkv = torch.randn(num_tokens, sum(sizes), dtype=dtype)
    query, key, _ = qkv.split(sizes, dim=-1)
    return query, key


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, **TOLERANCES[expected.dtype])


def assert_same(actual: tuple[torch.Tensor, ...], expected: tuple[torch.Tensor, ...]) -> None:
    """Bit for bit, output by output."""
    assert len(actual) == len(expected)
    for actual_tensor, expected_tensor in zip(actual, expected, strict=True):
        assert torch.equal(actual_tensor, expected_tensor)


# --- registration ---------------------------------------------------------------


def test_op_names_are_vllms() -> None:
    assert op_registry["rms_norm"] is RMSNorm
    assert op_registry["silu_and_mul"] is SiluAndMul
    assert issubclass(RotaryEmbedding, op_registry["rotary_embedding"])
    assert (NPURMSNorm.name, NPURotaryEmbedding.name, NPUSiluAndMul.name) == CUSTOM_OP_NAMES


def test_vllm_layers_build_our_ops() -> None:
    assert type(RMSNorm(64)) is NPURMSNorm
    assert type(rope(64, 64, torch.float16)) is NPURotaryEmbedding
    assert type(SiluAndMul()) is NPUSiluAndMul


def test_registering_twice_is_fine() -> None:
    register_custom_ops()
    register_custom_ops()
    assert op_registry_oot["RMSNorm"] is NPURMSNorm
    assert op_registry_oot["RotaryEmbedding"] is NPURotaryEmbedding
    assert op_registry_oot["SiluAndMul"] is NPUSiluAndMul
    assert type(RMSNorm(64)) is NPURMSNorm


def test_another_plugins_op_is_kept() -> None:
    class TheirSiluAndMul(SiluAndMul):
        pass

    del op_registry_oot["SiluAndMul"]
    op_registry_oot["SiluAndMul"] = TheirSiluAndMul
    register_custom_ops()
    assert op_registry_oot["SiluAndMul"] is TheirSiluAndMul
    assert op_registry_oot["RMSNorm"] is NPURMSNorm


def test_ops_are_enabled_by_their_vllm_names() -> None:
    config = VllmConfig()
    config.compilation_config.custom_ops = ["none", "+rms_norm"]
    with set_current_vllm_config(config):
        assert NPURMSNorm.enabled()
        assert not NPUSiluAndMul.enabled()
        assert not NPURotaryEmbedding.enabled()


# --- kernel set -----------------------------------------------------------------


def test_kernel_set_comes_from_the_device_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    assert current_kernel_set() == REFERENCE_KERNEL_SET  # the host backend of this test run
    use_kernel_set(monkeypatch, ASCEND_KERNEL_SET)
    assert current_kernel_set() == ASCEND_KERNEL_SET
    monkeypatch.setattr(current_platform, "backend", SimpleNamespace(name="no kernel set"))
    assert current_kernel_set() == REFERENCE_KERNEL_SET
    monkeypatch.setattr(current_platform, "backend", None)
    assert current_kernel_set() == REFERENCE_KERNEL_SET


def test_kernel_set_is_chosen_when_the_op_is_built(
    monkeypatch: pytest.MonkeyPatch, npu_calls: Counter[str]
) -> None:
    use_kernel_set(monkeypatch, ASCEND_KERNEL_SET)
    on_ascend = SiluAndMul()
    use_kernel_set(monkeypatch, REFERENCE_KERNEL_SET)
    on_reference = SiluAndMul()
    x = torch.randn(3, 16)
    on_ascend(x)
    assert npu_calls == {"npu_swiglu": 1}
    use_kernel_set(monkeypatch, ASCEND_KERNEL_SET)
    on_reference(x)
    assert npu_calls == {"npu_swiglu": 1}
    assert (on_ascend.kernel_set, on_reference.kernel_set) == ("ascend", "reference")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_reference_set_computes_vllms_native_bits(
    reference: Counter[str], dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the host the ops run the reference kernels where those are native's arithmetic
    in fewer ops (float32 RMSNorm, neox rotary), else native: the same bits either way."""
    from vllm_npu.worker import custom_ops

    used = Counter()
    for name in ("rms_norm", "fused_add_rms_norm", "rotary_embedding_neox"):
        op = getattr(custom_ops.REFERENCE_LAYER_KERNELS, name)
        monkeypatch.setattr(
            custom_ops.REFERENCE_LAYER_KERNELS,
            name,
            lambda *args, _op=op, _name=name: used.update([_name]) or _op(*args),
        )
    for tokens in (1, 5, 33):
        norm = rms_norm(64, dtype)
        x, residual = (torch.randn(2, tokens, 64) * 4).to(dtype).unbind(0)
        assert torch.equal(norm.forward_oot(x), norm.forward_native(x))
        assert_same(
            norm.forward_oot(x.clone(), residual.clone()),
            norm.forward_native(x.clone(), residual.clone()),
        )
        for head_size, rotary_dim in ((64, 64), (64, 32)):
            rotary = rope(head_size, rotary_dim, dtype)
            query, key = qkv_split(tokens, 4, 2, head_size, dtype)
            positions = torch.randint(0, 256, (tokens,))
            assert_same(
                rotary.forward_oot(positions, query, key),
                rotary.forward_native(positions, query, key),
            )
        x = torch.randn(tokens, 32, dtype=dtype)
        assert torch.equal(SiluAndMul().forward_oot(x), SiluAndMul.forward_native(x))
    assert not npu_calls_made(reference)
    norms = {"rms_norm": 3, "fused_add_rms_norm": 3} if dtype == torch.float32 else {}
    assert used == {**norms, "rotary_embedding_neox": 6}


def npu_calls_made(calls: Counter[str]) -> int:
    return sum(calls.values())


# --- Ascend path against native -------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_rms_norm(ascend: Counter[str], dtype: torch.dtype) -> None:
    norm = rms_norm(64, dtype)
    x = torch.randn(7, 64, dtype=dtype)
    out = norm(x)
    assert ascend == {"npu_rms_norm": 1}
    assert_close(out, norm.forward_native(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_rms_norm_with_residual(ascend: Counter[str], dtype: torch.dtype) -> None:
    norm = rms_norm(64, dtype)
    x, residual = torch.randn(2, 7, 64, dtype=dtype).unbind(0)
    out, new_residual = norm(x.clone(), residual.clone())
    assert ascend == {"npu_add_rms_norm": 1}
    expected_out, expected_residual = norm.forward_native(x.clone(), residual.clone())
    assert_close(out, expected_out)
    assert_close(new_residual, expected_residual)
    assert_close(new_residual, x + residual)


def test_rms_norm_without_weight_gives_the_op_a_gamma_on_the_device(
    ascend: Counter[str], standin: ModuleType
) -> None:
    """RMSNorm(has_weight=False) keeps a plain CPU ones-tensor (vLLM does not move it
    with the model); npu_rms_norm must get a gamma where x is, which the stand-in
    checks for an NPU input (a device factory from x gives an NPU tensor)."""
    from torch_npu._device import counting_host_reads, to_npu

    norm = RMSNorm(64, eps=1e-5, dtype=torch.float16, has_weight=False)
    x = to_npu(torch.randn(7, 64, dtype=torch.float16))
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        standin.npu_rms_norm(x, norm.weight)
    with counting_host_reads() as reads:
        out = norm(x)
    assert ascend == {"npu_rms_norm": 2} and reads.total == 0  # the refused call, then ours
    assert_close(out, norm.forward_native(x))


def test_rms_norm_falls_back_for_what_the_fused_op_cannot_do(ascend: Counter[str]) -> None:
    partial_variance = rms_norm(64, torch.float16, var_hidden_size=32)
    x = torch.randn(7, 64, dtype=torch.float16)
    assert torch.equal(partial_variance(x), partial_variance.forward_native(x))
    float32_weight = rms_norm(64, torch.float32)
    x = torch.randn(7, 64, dtype=torch.bfloat16)
    assert torch.equal(float32_weight(x), float32_weight.forward_native(x))
    assert not npu_calls_made(ascend)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rotary_dim", [64, 32], ids=["full", "partial"])
def test_rotary_embedding_neox(ascend: Counter[str], dtype: torch.dtype, rotary_dim: int) -> None:
    rotary = rope(64, rotary_dim, dtype)
    query, key = qkv_split(9, 4, 2, 64, dtype)
    positions = torch.randint(0, 256, (9,))
    expected_query, expected_key = rotary.forward_native(positions, query, key)
    out_query, out_key = rotary(positions, query, key)
    assert ascend == {"npu_rotary_mul": 2}
    assert_close(out_query, expected_query)
    assert_close(out_key, expected_key)
    assert out_query.shape == (9, 4 * 64) and out_key.shape == (9, 2 * 64)


def test_rotary_embedding_without_key(ascend: Counter[str]) -> None:
    rotary = rope(64, 64, torch.float32)
    query, _ = qkv_split(4, 2, 1, 64, torch.float32)
    positions = torch.tensor([0, 1, 2, 200])
    out_query, out_key = rotary(positions, query, None)
    assert out_key is None and ascend == {"npu_rotary_mul": 1}
    assert_close(out_query, rotary.forward_native(positions, query, None)[0])


def test_rotary_embedding_gptj_style_runs_natively(ascend: Counter[str]) -> None:
    rotary = rope(64, 64, torch.float16, neox=False)
    query, key = qkv_split(5, 4, 2, 64, torch.float16)
    positions = torch.randint(0, 256, (5,))
    assert_same(rotary(positions, query, key), rotary.forward_native(positions, query, key))
    assert not npu_calls_made(ascend)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 128), (2, 3, 64)], ids=["tokens", "batched"])
def test_silu_and_mul(ascend: Counter[str], dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    x = torch.randn(*shape, dtype=dtype)
    out = SiluAndMul()(x)
    assert ascend == {"npu_swiglu": 1}
    assert out.shape == (*shape[:-1], shape[-1] // 2)
    assert_close(out, SiluAndMul.forward_native(x))
