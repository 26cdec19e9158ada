"""PyTorch LoRA ops (bgmv) that leave tokens without an adapter (index -1) alone.

vLLM's ``vllm.lora.ops.torch_ops`` up to 0.32 index the adapter stack with -1, so
such tokens get the last slot's adapter; these follow the semantics of vLLM 0.33:
a token without an adapter contributes nothing, and an overwriting expand leaves
its output row as it was (as vLLM's triton kernel does).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _per_token_products(
    inputs: torch.Tensor,
    weights: torch.Tensor,
    lora_indices: torch.Tensor,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_t @ W[index_t]^T for each token t, zero where index_t is -1; the mask of
    tokens without an adapter, shaped (tokens, 1))``."""
    without_adapter = (lora_indices == -1).unsqueeze(-1)
    selected = weights[lora_indices.clamp(min=0)].to(dtype=dtype)
    if selected.dim() == 4:  # (tokens, 1, out, in): one layer of the stack
        selected = selected.squeeze(dim=1)
    products = torch.einsum("bi, boi -> bo", inputs.to(dtype=dtype), selected)
    return products.masked_fill(without_adapter, 0), without_adapter


def bgmv_shrink(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    scaling: float = 1.0,
) -> None:
    """``output[t, :r] = scaling * x_t @ A[index_t]^T``; zero for tokens without an adapter."""
    products, _ = _per_token_products(
        inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype
    )
    output_tensor[:, : products.shape[1]] = scaling * products


def bgmv_expand(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    add_inputs: bool = True,
) -> None:
    """``output[t, :n] (+)= x_t @ B[index_t]^T``; rows without an adapter stay as they are."""
    products, without_adapter = _per_token_products(
        inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype
    )
    # One product row broadcast over every output row (vLLM's ops allow it).
    rows = 1 if products.shape[0] == 1 and output_tensor.shape[0] != 1 else output_tensor.shape[0]
    products, without_adapter = products[:rows], without_adapter[:rows]
    # The adapter and the model may pad their output widths differently.
    width = min(products.shape[1], output_tensor.shape[1])
    target = output_tensor[:, :width]
    if add_inputs:
        target += products[:, :width]
    else:
        target.copy_(torch.where(without_adapter, target, products[:, :width]))


def bgmv_expand_slice(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    slice_offset: int,
    slice_size: int,
    add_inputs: bool = True,
) -> None:
    """``output[t, offset:offset + size] (+)= x_t @ B[index_t]^T``; rows without an
    adapter stay as they are."""
    products, without_adapter = _per_token_products(
        inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype
    )
    target = output_tensor[:, slice_offset : slice_offset + slice_size]
    if add_inputs:
        target += products
    else:
        target.copy_(torch.where(without_adapter, target, products))


def ops_give_unadapted_tokens_an_adapter(expand: Callable[..., None]) -> bool:
    """Whether the op ``expand`` (a ``bgmv_expand``) adds an adapter's product to a
    token whose lora index is -1: vLLM's PyTorch ops up to 0.32 do."""
    output = torch.zeros(1, 2)
    expand(torch.ones(1, 1), torch.ones(1, 2, 1), output, torch.tensor([-1]))
    return bool((output != 0).any())
