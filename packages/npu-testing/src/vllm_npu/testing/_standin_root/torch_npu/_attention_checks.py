"""Argument checks the stand-in's attention ops share (``_attention``, ``_mla``): each
raises RuntimeError naming the op and what to pass instead, as the real ops refuse."""

from __future__ import annotations

from functools import cache
from typing import NoReturn

import torch
from torch import Tensor

ATTENTION_DTYPES = (torch.float16, torch.bfloat16)
"""What the real ops take for query, key, value and the caches (no float32)."""
MASK_DTYPES = (torch.bool, torch.int8, torch.uint8)
CAUSAL_MASK_SIZE = 2048
"""Side of the compressed upper-triangular mask that sparse_mode 2, 3 and 4 take."""


def _fail(op: str, message: str) -> NoReturn:
    raise RuntimeError(f"{op}: {message}.")


def _check_rank(op: str, name: str, tensor: Tensor, rank: int, layout: str) -> None:
    if tensor.dim() != rank:
        _fail(op, f"{name} must be {rank}-D {layout}, got shape {tuple(tensor.shape)}")


def _check_contiguous(op: str, name: str, tensor: Tensor) -> None:
    if not tensor.is_contiguous():
        _fail(op, f"{name} must be contiguous (strides {tensor.stride()}); pass .contiguous()")


def _check_same_dtype(op: str, **tensors: Tensor) -> None:
    dtypes = {name: tensor.dtype for name, tensor in tensors.items()}
    for name, dtype in dtypes.items():
        if dtype not in ATTENTION_DTYPES:
            _fail(
                op,
                f"{name} must be float16 or bfloat16, got {dtype} (the op has no float32 kernel)",
            )
    if len(set(dtypes.values())) > 1:
        _fail(op, f"dtypes must match, got {dtypes}")


def _check_index_tensor(op: str, name: str, tensor: Tensor, rank: int) -> None:
    if tensor.dtype != torch.int32:
        _fail(op, f"{name} must be int32, got {tensor.dtype}; convert with .to(torch.int32)")
    if tensor.dim() != rank:
        _fail(op, f"{name} must be {rank}-D, got shape {tuple(tensor.shape)}")


def _check_heads(op: str, query: Tensor, num_heads: int, num_kv_heads: int) -> None:
    if query.shape[1] != num_heads:
        _fail(op, f"num_heads={num_heads} but query has {query.shape[1]} heads")
    if num_kv_heads < 1 or num_heads % num_kv_heads:
        _fail(
            op,
            f"num_heads ({num_heads}) must be a multiple of the number of KV heads "
            f"({num_kv_heads})",
        )


def _check_causal_mask(op: str, atten_mask: Tensor | None) -> None:
    size = CAUSAL_MASK_SIZE
    if atten_mask is None:
        _fail(op, f"sparse_mode=3 needs atten_mask, the {size}x{size} upper-triangular mask")
    if atten_mask.dtype not in MASK_DTYPES or tuple(atten_mask.shape) != (size, size):
        _fail(
            op,
            f"sparse_mode=3 needs a {size}x{size} bool/int8/uint8 atten_mask, got "
            f"{tuple(atten_mask.shape)} {atten_mask.dtype}",
        )
    if not torch.equal(atten_mask.bool(), _upper_triangle(atten_mask.device)):
        _fail(
            op,
            "atten_mask must be 1 above the diagonal and 0 on and below it, "
            f"torch.triu(torch.ones({size}, {size}), diagonal=1)",
        )


@cache
def _upper_triangle(device: torch.device) -> Tensor:
    size = CAUSAL_MASK_SIZE
    return torch.ones(size, size, dtype=torch.bool, device=device).triu_(1)


def _check_kv_lens(
    op: str, name: str, kv_lens: list[int], block_table: Tensor, block_size: int, minimum: int
) -> None:
    capacity = block_table.shape[1] * block_size
    for req, kv_len in enumerate(kv_lens):
        if not minimum <= kv_len <= capacity:
            _fail(
                op,
                f"{name}[{req}] = {kv_len} is outside [{minimum}, {capacity}] "
                "(block_table width * block_size)",
            )


def _check_used_blocks(
    op: str, block_table: Tensor, kv_lens: list[int], block_size: int, num_blocks: int
) -> None:
    for req, kv_len in enumerate(kv_lens):
        used = block_table[req, : -(-kv_len // block_size)]
        if used.numel() and not bool(((used >= 0) & (used < num_blocks)).all()):
            _fail(
                op,
                f"block_table[{req}] names blocks {used.tolist()}; each must lie in "
                f"[0, {num_blocks})",
            )
