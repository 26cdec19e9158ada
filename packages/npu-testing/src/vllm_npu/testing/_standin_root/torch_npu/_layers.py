"""Stand-in layer ops: RMSNorm, add + RMSNorm, rotary multiply and SwiGLU.

Each op keeps torch_npu's signature, computes Ascend's documented formula in float32
on the CPU and returns the input's dtype; what the real op rejects (a dtype other
than float16/bfloat16/float32, mismatched dtypes or shapes) raises ``RuntimeError``,
as torch_npu's checks do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_npu._device import is_npu

__all__ = ["npu_add_rms_norm", "npu_rms_norm", "npu_rotary_mul", "npu_swiglu"]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_MAX_DIMS = 8
_ROTARY_MODES = ("half", "interleave")


def _check_dtypes(op: str, **tensors: Tensor) -> None:
    """Every tensor is float16, bfloat16 or float32, and all share one dtype."""
    for name, tensor in tensors.items():
        if tensor.dtype not in _FLOAT_DTYPES:
            raise RuntimeError(
                f"{op}: {name} has dtype {tensor.dtype}; expected float16, bfloat16 or float32"
            )
    dtypes = {name: tensor.dtype for name, tensor in tensors.items()}
    if len(set(dtypes.values())) > 1:
        raise RuntimeError(f"{op}: inputs must share one dtype, got {dtypes}")


def _check_rank(op: str, name: str, tensor: Tensor, low: int, high: int) -> None:
    if not low <= tensor.dim() <= high:
        expected = str(low) if low == high else f"{low} to {high}"
        raise RuntimeError(
            f"{op}: {name} must have {expected} dims, got shape {tuple(tensor.shape)}"
        )


def _check_gamma(op: str, x: Tensor, gamma: Tensor) -> None:
    """gamma's shape is the trailing dims of x (the dims that are normalized)."""
    trailing = tuple(x.shape[x.dim() - gamma.dim() :]) if gamma.dim() <= x.dim() else None
    if gamma.dim() == 0 or trailing != tuple(gamma.shape):
        raise RuntimeError(
            f"{op}: gamma shape {tuple(gamma.shape)} must equal the trailing dims "
            f"of the input shape {tuple(x.shape)}"
        )


def _check_same_device(op: str, **tensors: Tensor) -> None:
    """All in NPU memory or all on the host (see ``torch_npu._device``), as a kernel
    launch requires."""
    places = {name: "npu" if is_npu(tensor) else "cpu" for name, tensor in tensors.items()}
    if len(set(places.values())) > 1:
        raise RuntimeError(
            f"{op}: Expected all tensors to be on the same device, got {places}; move the "
            "host tensors to the NPU"
        )


def _check_norm_inputs(op: str, x: Tensor, gamma: Tensor) -> None:
    _check_rank(op, "input", x, 1, _MAX_DIMS)
    _check_gamma(op, x, gamma)
    _check_same_device(op, input=x, gamma=gamma)


def _normalize(x: Tensor, gamma: Tensor, epsilon: float) -> tuple[Tensor, Tensor]:
    """RmsNorm(x) = x / sqrt(mean(x^2) + eps) * gamma over gamma's dims, and rstd.

    ``x`` is float32; rstd keeps x's leading dims and has size 1 in gamma's dims.
    """
    normalized_dims = tuple(range(x.dim() - gamma.dim(), x.dim()))
    rstd = torch.rsqrt(x.pow(2).mean(dim=normalized_dims, keepdim=True) + epsilon)
    return x * rstd * gamma.float(), rstd


def npu_rms_norm(input: Tensor, gamma: Tensor, epsilon: float = 1e-06) -> tuple[Tensor, Tensor]:
    """(y, rstd): y = input / Rms(input) * gamma in input's dtype; rstd = 1 / Rms in float32."""
    _check_dtypes("npu_rms_norm", input=input, gamma=gamma)
    _check_norm_inputs("npu_rms_norm", input, gamma)
    y, rstd = _normalize(input.float(), gamma, epsilon)
    return y.to(input.dtype), rstd


def npu_add_rms_norm(
    x1: Tensor, x2: Tensor, gamma: Tensor, epsilon: float = 1e-06
) -> tuple[Tensor, Tensor, Tensor]:
    """(y, rstd, x): x = x1 + x2, y = x / Rms(x) * gamma; y and x in x1's dtype."""
    _check_dtypes("npu_add_rms_norm", x1=x1, x2=x2, gamma=gamma)
    if x1.shape != x2.shape:
        raise RuntimeError(
            f"npu_add_rms_norm: x1 shape {tuple(x1.shape)} and x2 shape "
            f"{tuple(x2.shape)} must be equal"
        )
    _check_norm_inputs("npu_add_rms_norm", x1, gamma)
    x = x1.float() + x2.float()
    y, rstd = _normalize(x, gamma, epsilon)
    return y.to(x1.dtype), rstd, x.to(x1.dtype)


def _check_rotary_factors(self: Tensor, r1: Tensor, r2: Tensor) -> None:
    """r1 and r2 have one shape, which broadcasts to self's without growing it."""
    if r1.shape != r2.shape:
        raise RuntimeError(
            f"npu_rotary_mul: r1 shape {tuple(r1.shape)} and r2 shape {tuple(r2.shape)} "
            "must be equal"
        )
    if any(r not in (1, x) for r, x in zip(r1.shape, self.shape, strict=True)):
        raise RuntimeError(
            f"npu_rotary_mul: r1/r2 shape {tuple(r1.shape)} does not broadcast to "
            f"the input shape {tuple(self.shape)}"
        )


def _check_rotary_inputs(self: Tensor, r1: Tensor, r2: Tensor, rotary_mode: str) -> None:
    if rotary_mode not in _ROTARY_MODES:
        raise RuntimeError(
            f"npu_rotary_mul: rotary_mode {rotary_mode!r} is not one of {_ROTARY_MODES}"
        )
    _check_dtypes("npu_rotary_mul", self=self, r1=r1, r2=r2)
    for name, tensor in (("input", self), ("r1", r1), ("r2", r2)):
        _check_rank("npu_rotary_mul", name, tensor, 4, 4)
    head_dim = self.shape[-1]
    if head_dim % 2 or r1.shape[-1] != head_dim:
        raise RuntimeError(
            "npu_rotary_mul: the last dim must be even and the same for input, r1 and "
            f"r2, got {head_dim}, {r1.shape[-1]} and {r2.shape[-1]}"
        )
    _check_rotary_factors(self, r1, r2)


def _rotate(x: Tensor, rotary_mode: str) -> Tensor:
    """half: cat(-x2, x1) of the two halves; interleave: (-x[2i+1], x[2i]) pairs."""
    if rotary_mode == "half":
        first, second = x.chunk(2, dim=-1)
        return torch.cat((-second, first), dim=-1)
    even, odd = x[..., ::2], x[..., 1::2]
    return torch.stack((-odd, even), dim=-1).flatten(-2)


def npu_rotary_mul(input: Tensor, r1: Tensor, r2: Tensor, rotary_mode: str = "half") -> Tensor:
    """r1 * input + r2 * rotate(input): input is 4-D, r1 (cos) and r2 (sin) broadcast to it."""
    _check_rotary_inputs(input, r1, r2, rotary_mode)
    x = input.float()
    output = r1.float() * x + r2.float() * _rotate(x, rotary_mode)
    return output.to(input.dtype)


def npu_swiglu(input: Tensor, dim: int = -1) -> Tensor:
    """silu(A) * B, where A and B are the first and second halves of input along dim."""
    _check_dtypes("npu_swiglu", input=input)
    _check_rank("npu_swiglu", "input", input, 1, _MAX_DIMS)
    if not -input.dim() <= dim < input.dim():
        raise RuntimeError(
            f"npu_swiglu: dim {dim} is out of range for an input with {input.dim()} dims"
        )
    if input.numel() == 0 or input.shape[dim] % 2:
        raise RuntimeError(
            f"npu_swiglu: the input must be non-empty and even along dim {dim}, "
            f"got shape {tuple(input.shape)}"
        )
    first, second = input.float().chunk(2, dim=dim)
    return (F.silu(first) * second).to(input.dtype)
