"""The stand-in's layer ops against independent formulas, and what they reject."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from types import ModuleType

import pytest
import torch

from vllm_npu.testing.standin import installed

DTYPES = [torch.float16, torch.bfloat16, torch.float32]
TOLERANCES = {
    torch.float16: {"atol": 2e-3, "rtol": 2e-3},
    torch.bfloat16: {"atol": 2e-2, "rtol": 2e-2},
    torch.float32: {"atol": 1e-5, "rtol": 1e-5},
}


@pytest.fixture(scope="module")
def torch_npu() -> Iterator[ModuleType]:
    with installed() as module:
        yield module


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """actual (in its dtype) against a float64 expectation."""
    torch.testing.assert_close(actual, expected.to(actual.dtype), **TOLERANCES[actual.dtype])


def rms_reference(x: torch.Tensor, gamma: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean of squares over gamma's dims + eps) * gamma, in float64."""
    x = x.double()
    flat = x.reshape(*x.shape[: x.dim() - gamma.dim()], -1)
    rms = (flat.square().sum(-1) / flat.shape[-1] + eps).sqrt()
    return x / rms.reshape(*rms.shape, *([1] * gamma.dim())) * gamma.double()


def rotation_matrix(size: int, mode: str) -> torch.Tensor:
    """M with x @ M == rotate(x): half -> cat(-x2, x1); interleave -> pairs (-x[2i+1], x[2i])."""
    matrix = torch.zeros(size, size, dtype=torch.float64)
    half = size // 2
    if mode == "half":
        matrix[:half, half:] = torch.eye(half)
        matrix[half:, :half] = -torch.eye(half)
    else:
        index = torch.arange(half) * 2
        matrix[index, index + 1] = 1
        matrix[index + 1, index] = -1
    return matrix


def test_ops_are_exported_with_torch_npus_signatures(torch_npu: ModuleType) -> None:
    signatures = {
        "npu_rms_norm": ["input", "gamma", "epsilon"],
        "npu_add_rms_norm": ["x1", "x2", "gamma", "epsilon"],
        "npu_rotary_mul": ["input", "r1", "r2", "rotary_mode"],
        "npu_swiglu": ["input", "dim"],
    }
    for name, parameters in signatures.items():
        assert name in torch_npu.__all__
        assert list(inspect.signature(getattr(torch_npu, name)).parameters) == parameters
    assert inspect.signature(torch_npu.npu_rms_norm).parameters["epsilon"].default == 1e-06
    assert inspect.signature(torch_npu.npu_rotary_mul).parameters["rotary_mode"].default == "half"
    assert inspect.signature(torch_npu.npu_swiglu).parameters["dim"].default == -1


# --- results --------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_rms_norm(torch_npu: ModuleType, dtype: torch.dtype) -> None:
    x = torch.randn(3, 5, 64, dtype=dtype)
    gamma = torch.randn(64, dtype=dtype)
    y, rstd = torch_npu.npu_rms_norm(x, gamma, epsilon=1e-5)
    assert y.dtype == dtype and y.shape == x.shape
    assert rstd.dtype == torch.float32 and rstd.shape == (3, 5, 1)
    assert_close(y, rms_reference(x, gamma, 1e-5))
    expected_rstd = (x.double().square().mean(-1, keepdim=True) + 1e-5).rsqrt()
    torch.testing.assert_close(rstd, expected_rstd.float(), atol=1e-5, rtol=1e-5)


def test_rms_norm_over_several_trailing_dims(torch_npu: ModuleType) -> None:
    x = torch.randn(4, 3, 8)
    gamma = torch.randn(3, 8)
    y, rstd = torch_npu.npu_rms_norm(x, gamma)
    assert rstd.shape == (4, 1, 1)
    assert_close(y, rms_reference(x, gamma, 1e-6))


def test_rms_norm_default_epsilon_is_used(torch_npu: ModuleType) -> None:
    x = torch.full((1, 4), 1e-3)
    y, _ = torch_npu.npu_rms_norm(x, torch.ones(4))
    assert_close(y, rms_reference(x, torch.ones(4), 1e-6))


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_rms_norm(torch_npu: ModuleType, dtype: torch.dtype) -> None:
    x1, x2 = torch.randn(2, 6, 32, dtype=dtype).unbind(0)
    gamma = torch.randn(32, dtype=dtype)
    y, rstd, x = torch_npu.npu_add_rms_norm(x1, x2, gamma, 1e-5)
    summed = x1.double() + x2.double()
    assert (y.dtype, x.dtype, rstd.dtype) == (dtype, dtype, torch.float32)
    assert rstd.shape == (6, 1)
    assert_close(x, summed)
    assert_close(y, rms_reference(summed, gamma, 1e-5))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["half", "interleave"])
@pytest.mark.parametrize(
    ("x_shape", "factor_shape"),
    [
        ((2, 5, 3, 16), (1, 5, 1, 16)),  # BSND with 1S1D
        ((2, 5, 3, 16), (2, 5, 1, 16)),  # BSND with BS1D
        ((2, 5, 3, 16), (2, 5, 3, 16)),  # BSND with BSND
        ((2, 3, 5, 16), (1, 1, 5, 16)),  # BNSD with 11SD
    ],
)
def test_rotary_mul(
    torch_npu: ModuleType,
    dtype: torch.dtype,
    mode: str,
    x_shape: tuple[int, ...],
    factor_shape: tuple[int, ...],
) -> None:
    x = torch.randn(x_shape, dtype=dtype)
    r1 = (torch.rand(factor_shape) * 2 - 1).to(dtype)
    r2 = (torch.rand(factor_shape) * 2 - 1).to(dtype)
    out = torch_npu.npu_rotary_mul(x, r1, r2, rotary_mode=mode)
    rotated = x.double() @ rotation_matrix(16, mode)
    assert out.dtype == dtype and out.shape == x.shape
    assert_close(out, r1.double() * x.double() + r2.double() * rotated)


def test_rotary_mul_half_mode_rotates_pairs_of_halves(torch_npu: ModuleType) -> None:
    """With cos/sin repeated over both halves, channel i and i + D/2 turn by angle_i."""
    angle = torch.rand(1, 4, 1, 8, dtype=torch.float64) * 6
    x = torch.randn(1, 4, 2, 16, dtype=torch.float64).float()
    cos = angle.cos().repeat(1, 1, 1, 2).float()
    sin = angle.sin().repeat(1, 1, 1, 2).float()
    out = torch_npu.npu_rotary_mul(x, cos, sin)
    turned = torch.complex(x[..., :8].double(), x[..., 8:].double()) * torch.polar(
        torch.ones_like(angle), angle
    )
    assert_close(out, torch.cat((turned.real, turned.imag), dim=-1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "dim"), [((5, 64), -1), ((6, 3), 0), ((2, 4, 3), 1)])
def test_swiglu(
    torch_npu: ModuleType, dtype: torch.dtype, shape: tuple[int, ...], dim: int
) -> None:
    x = torch.randn(shape, dtype=dtype)
    out = torch_npu.npu_swiglu(x, dim=dim)
    half = x.shape[dim] // 2
    a = x.double().narrow(dim, 0, half)
    b = x.double().narrow(dim, half, half)
    assert out.dtype == dtype
    assert_close(out, a * torch.sigmoid(a) * b)


# --- rejections -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "gamma", "message"),
    [
        (torch.randn(2, 8, dtype=torch.float64), torch.randn(8, dtype=torch.float64), "dtype"),
        (torch.ones(2, 8, dtype=torch.int32), torch.ones(8, dtype=torch.int32), "dtype"),
        (torch.randn(2, 8, dtype=torch.float16), torch.randn(8), "share one dtype"),
        (torch.randn(2, 8), torch.randn(7), "trailing dims"),
        (torch.randn(2, 8), torch.randn(8, 2), "trailing dims"),
        (torch.randn(8), torch.randn(2, 8), "trailing dims"),
        (torch.randn(2, 8), torch.tensor(1.0), "trailing dims"),
        (torch.randn([1] * 9), torch.randn(1), "1 to 8 dims"),
    ],
)
def test_rms_norm_rejects(
    torch_npu: ModuleType, x: torch.Tensor, gamma: torch.Tensor, message: str
) -> None:
    with pytest.raises(RuntimeError, match=f"npu_rms_norm: .*{message}"):
        torch_npu.npu_rms_norm(x, gamma)


@pytest.mark.parametrize(
    ("x2", "gamma", "message"),
    [
        (torch.randn(3, 8), torch.randn(8), "must be equal"),
        (torch.randn(2, 8, dtype=torch.bfloat16), torch.randn(8), "share one dtype"),
        (torch.randn(2, 8), torch.randn(8, dtype=torch.float16), "share one dtype"),
        (torch.randn(2, 8), torch.randn(4), "trailing dims"),
    ],
)
def test_add_rms_norm_rejects(
    torch_npu: ModuleType, x2: torch.Tensor, gamma: torch.Tensor, message: str
) -> None:
    with pytest.raises(RuntimeError, match=f"npu_add_rms_norm: .*{message}"):
        torch_npu.npu_add_rms_norm(torch.randn(2, 8), x2, gamma)


@pytest.mark.parametrize(
    ("x_shape", "r1_shape", "r2_shape", "message"),
    [
        ((5, 3, 16), (5, 1, 16), (5, 1, 16), "4 dims"),
        ((1, 5, 3, 16), (5, 1, 16), (5, 1, 16), "4 dims"),
        ((1, 5, 3, 15), (1, 5, 1, 15), (1, 5, 1, 15), "even"),
        ((1, 5, 3, 16), (1, 5, 1, 8), (1, 5, 1, 8), "the same for input, r1 and r2"),
        ((1, 5, 3, 16), (1, 5, 1, 16), (1, 1, 1, 16), "must be equal"),
        ((1, 5, 3, 16), (1, 4, 1, 16), (1, 4, 1, 16), "does not broadcast"),
        ((1, 5, 1, 16), (1, 5, 3, 16), (1, 5, 3, 16), "does not broadcast"),
    ],
)
def test_rotary_mul_rejects_shapes(
    torch_npu: ModuleType,
    x_shape: tuple[int, ...],
    r1_shape: tuple[int, ...],
    r2_shape: tuple[int, ...],
    message: str,
) -> None:
    x, r1, r2 = torch.randn(x_shape), torch.randn(r1_shape), torch.randn(r2_shape)
    with pytest.raises(RuntimeError, match=f"npu_rotary_mul: .*{message}"):
        torch_npu.npu_rotary_mul(x, r1, r2)


def test_rotary_mul_rejects_dtypes_and_modes(torch_npu: ModuleType) -> None:
    x, r = torch.randn(1, 5, 3, 16), torch.randn(1, 5, 1, 16)
    with pytest.raises(RuntimeError, match="share one dtype"):
        torch_npu.npu_rotary_mul(x, r.half(), r.half())
    with pytest.raises(RuntimeError, match="dtype torch.float64"):
        torch_npu.npu_rotary_mul(x.double(), r.double(), r.double())
    with pytest.raises(RuntimeError, match="rotary_mode 'quarter'"):
        torch_npu.npu_rotary_mul(x, r, r, rotary_mode="quarter")


@pytest.mark.parametrize(
    ("x", "dim", "message"),
    [
        (torch.randn(4, 7), -1, "even along dim -1"),
        (torch.randn(3, 8), 0, "even along dim 0"),
        (torch.randn(0, 8), -1, "non-empty"),
        (torch.randn(4, 8), 2, "out of range"),
        (torch.randn(4, 8), -3, "out of range"),
        (torch.randn(4, 8, dtype=torch.float64), -1, "dtype torch.float64"),
        (torch.randn([1] * 8 + [2]), -1, "1 to 8 dims"),
    ],
)
def test_swiglu_rejects(torch_npu: ModuleType, x: torch.Tensor, dim: int, message: str) -> None:
    with pytest.raises(RuntimeError, match=f"npu_swiglu: .*{message}"):
        torch_npu.npu_swiglu(x, dim=dim)
