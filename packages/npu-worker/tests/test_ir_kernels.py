"""Our vLLM IR implementations: vLLM's IR ops reach torch_npu's fused norms (on the
stand-in) on the Ascend kernel set, and vLLM's native code everywhere else."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import torch

ir = pytest.importorskip("vllm.ir", reason="this vLLM has no vLLM IR")

from vllm.platforms import current_platform  # noqa: E402

from vllm_npu.platform import ir_kernels as platform_ir  # noqa: E402
from vllm_npu.testing.standin import installed  # noqa: E402
from vllm_npu.worker.custom_ops import ASCEND_KERNEL_SET, REFERENCE_KERNEL_SET  # noqa: E402
from vllm_npu.worker.ir_kernels import register_ir_kernels  # noqa: E402

NORM_OPS = ("npu_rms_norm", "npu_add_rms_norm")
OURS_FIRST = [platform_ir.PROVIDER, "native"]
HIDDEN = 64
EPS = 1e-6


@pytest.fixture(scope="module")
def standin() -> Iterator[ModuleType]:
    with installed() as torch_npu:
        yield torch_npu


@pytest.fixture
def npu_calls(standin: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    calls: Counter[str] = Counter()

    def counting(name: str, op: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return op(*args, **kwargs)

        return run

    for name in NORM_OPS:
        monkeypatch.setattr(standin, name, counting(name, getattr(standin, name)))
    return calls


def use_kernel_set(monkeypatch: pytest.MonkeyPatch, kernel_set: str) -> list[str]:
    monkeypatch.setattr(current_platform, "backend", SimpleNamespace(kernel_set=kernel_set))
    return register_ir_kernels()


@pytest.fixture(autouse=True)
def restore_support() -> Iterator[None]:
    """Whether ours are supported follows the backend of the test; put it back after."""
    yield
    register_ir_kernels()


def inputs(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(5, HIDDEN, generator=generator).to(dtype)
    residual = torch.randn(5, HIDDEN, generator=generator).to(dtype)
    weight = torch.randn(HIDDEN, generator=generator).to(dtype)
    return x, residual, weight


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rms_norm_runs_npu_rms_norm(monkeypatch, npu_calls, dtype) -> None:
    assert "rms_norm" in use_kernel_set(monkeypatch, ASCEND_KERNEL_SET)
    x, _, weight = inputs(dtype)
    expected = ir.ops.rms_norm.impls["native"].impl_fn(x, weight, EPS)
    with ir.ops.rms_norm.set_priority(OURS_FIRST):
        assert ir.ops.rms_norm.dispatch(x, weight, EPS).provider == platform_ir.PROVIDER
        actual = ir.ops.rms_norm(x, weight, EPS)
    assert npu_calls == Counter({"npu_rms_norm": 1})
    torch.testing.assert_close(actual, expected, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_add_rms_norm_runs_npu_add_rms_norm(monkeypatch, npu_calls, dtype) -> None:
    use_kernel_set(monkeypatch, ASCEND_KERNEL_SET)
    x, residual, weight = inputs(dtype)
    native = ir.ops.fused_add_rms_norm.impls["native"].impl_fn
    expected = native(x.clone(), residual.clone(), weight, EPS)
    with ir.ops.fused_add_rms_norm.set_priority(OURS_FIRST):
        # What vLLM's RMSNorm calls with a residual.
        actual = ir.ops.fused_add_rms_norm.maybe_inplace(x, residual, weight, EPS)
    assert npu_calls == Counter({"npu_add_rms_norm": 1})
    for got, wanted in zip(actual, expected, strict=True):
        torch.testing.assert_close(got, wanted, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize(
    "case",
    ["no-weight", "weight-of-another-dtype", "variance-size"],
)
def test_arguments_the_fused_op_cannot_take_run_natively(monkeypatch, npu_calls, case) -> None:
    use_kernel_set(monkeypatch, ASCEND_KERNEL_SET)
    x, _, weight = inputs(torch.float16)
    arguments = {
        "no-weight": (x, None, EPS),
        "weight-of-another-dtype": (x, weight.float(), EPS),
        "variance-size": (x, weight, EPS, HIDDEN // 2),
    }[case]
    with ir.ops.rms_norm.set_priority(OURS_FIRST):
        assert ir.ops.rms_norm.dispatch(*arguments).provider == "native"
        ir.ops.rms_norm(*arguments)
    assert not npu_calls


def test_other_kernel_sets_run_natively(monkeypatch, npu_calls) -> None:
    assert use_kernel_set(monkeypatch, REFERENCE_KERNEL_SET) == []
    x, residual, weight = inputs(torch.float16)
    with (
        ir.ops.rms_norm.set_priority(OURS_FIRST),
        ir.ops.fused_add_rms_norm.set_priority(OURS_FIRST),
    ):
        ir.ops.rms_norm(x, weight, EPS)
        ir.ops.fused_add_rms_norm(x, residual, weight, EPS)
    assert not npu_calls


def test_platform_puts_ours_first_only_where_supported(monkeypatch) -> None:
    use_kernel_set(monkeypatch, ASCEND_KERNEL_SET)
    priority = platform_ir.default_priority()
    assert priority.rms_norm == OURS_FIRST
    assert priority.fused_add_rms_norm == OURS_FIRST
    use_kernel_set(monkeypatch, REFERENCE_KERNEL_SET)
    priority = platform_ir.default_priority()
    assert priority.rms_norm == ["native"] and priority.fused_add_rms_norm == ["native"]


def test_registering_again_keeps_one_implementation(monkeypatch) -> None:
    use_kernel_set(monkeypatch, ASCEND_KERNEL_SET)
    first = ir.ops.rms_norm.impls[platform_ir.PROVIDER]
    register_ir_kernels()
    assert ir.ops.rms_norm.impls[platform_ir.PROVIDER] is first
