"""The MLA kernels' dispatch layer: named kernel sets behind one protocol.

The MLA backend asks for the set named like the device backend's attention kernel
set (``get_mla_kernels``); ``_reference`` holds the contract and the portable PyTorch
set ("reference"). A device set is one module beside it, registered below; it must
import without its device library (import it inside the ops).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from vllm_npu.attention.mla_kernels._ascend import ASCEND_MLA_KERNELS
from vllm_npu.attention.mla_kernels._reference import REFERENCE_MLA_KERNELS


@runtime_checkable
class MLAKernels(Protocol):
    """One set of MLA ops; the semantics are those of ``_reference``."""

    name: str
    block_size: int | None
    """The latent cache block size the ops require, or None for any."""
    dtypes: tuple[torch.dtype, ...]
    """Model (and latent cache) dtypes the ops accept."""

    def unsupported(
        self,
        *,
        kv_lora_rank: int,
        qk_rope_head_dim: int,
        qk_nope_head_dim: int | None = None,
        v_head_dim: int | None = None,
        num_heads: int | None = None,
    ) -> list[str]:
        """The features of a model with these sizes (``num_heads``: per rank; None: not
        known) that the ops cannot run, named for an error message; empty when they can
        run it."""
        ...

    def write_latent_cache(
        self, kv_c: Tensor, k_pe: Tensor, latent_cache: Tensor, slot_mapping: Tensor
    ) -> None: ...

    def zero_blocks(self, latent_cache: Tensor, block_ids: list[int]) -> None:
        """Zero the memory of blocks ``block_ids`` (in the set's own cache layout)."""
        ...

    def gather_latent(
        self,
        latent_cache: Tensor,
        block_table: Tensor,
        token_requests: Tensor,
        token_positions: Tensor,
    ) -> Tensor: ...

    def decode_attention(
        self,
        query: Tensor,
        latent_cache: Tensor,
        block_table: Tensor,
        seq_lens: Tensor,
        *,
        scale: float,
        kv_lora_rank: int,
        max_seq_len: int,
        host_seq_lens: list[int] | None = None,
    ) -> Tensor:
        """``host_seq_lens``: ``seq_lens`` on the host, built once per step; a device set
        may require it so that no layer reads device data back."""
        ...

    def prefill_attention(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        query_start_loc: list[int],
        kv_start_loc: list[int],
        *,
        scale: float,
        causal: bool = True,
        return_lse: bool = False,
        output: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]: ...


_MLA_KERNELS_BY_NAME: dict[str, MLAKernels] = {}


def register_mla_kernels(name: str, kernels: MLAKernels) -> None:
    """Make ``kernels`` available as ``name``; a name cannot be taken twice."""
    if not isinstance(kernels, MLAKernels):
        raise TypeError(
            f"{kernels!r} is not an MLA kernel set "
            "(see vllm_npu.attention.mla_kernels.MLAKernels)"
        )
    registered = _MLA_KERNELS_BY_NAME.get(name)
    if registered is not None and registered is not kernels:
        raise ValueError(f"MLA kernel set {name!r} is already registered")
    _MLA_KERNELS_BY_NAME[name] = kernels


def get_mla_kernels(name: str) -> MLAKernels:
    """The MLA kernel set registered as ``name``."""
    try:
        return _MLA_KERNELS_BY_NAME[name]
    except KeyError:
        raise ValueError(
            f"no MLA kernels for the {name!r} attention kernel set (MLA kernel sets: "
            f"{', '.join(available_mla_kernels())}); run MLA models on a device backend "
            "with one, or register a set with vllm_npu.attention.mla_kernels."
            "register_mla_kernels"
        ) from None


def available_mla_kernels() -> tuple[str, ...]:
    """Names of the registered MLA kernel sets, sorted."""
    return tuple(sorted(_MLA_KERNELS_BY_NAME))


register_mla_kernels("reference", REFERENCE_MLA_KERNELS)
register_mla_kernels("ascend", ASCEND_MLA_KERNELS)

__all__ = [
    "MLAKernels",
    "available_mla_kernels",
    "get_mla_kernels",
    "register_mla_kernels",
]
