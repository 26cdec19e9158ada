"""The attention kernels' dispatch layer: named kernel sets behind one protocol.

The attention backend asks for a set by name (``get_kernels``) and calls its ops;
``_reference`` holds the contract and the portable PyTorch set ("reference").
A device set (such as "ascend") is one module beside it, registered below with one
``register_kernels`` call; that module must import without its device library
(import torch_npu inside the ops) so that registering it costs nothing on a host.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from vllm_npu.attention.kernels._reference import REFERENCE_KERNELS


@runtime_checkable
class AttentionKernels(Protocol):
    """One set of attention ops; the semantics are those of ``_reference``."""

    name: str

    def write_kv_cache(
        self, key: Tensor, value: Tensor, kv_cache: Tensor, slot_mapping: Tensor
    ) -> None: ...

    def paged_attention(
        self,
        query: Tensor,
        kv_cache: Tensor,
        block_table: Tensor,
        query_start_loc: Tensor,
        seq_lens: Tensor,
        *,
        scale: float,
        output: Tensor,
        sliding_window: int | None = None,
        logits_soft_cap: float | None = None,
        max_query_len: int | None = None,
        max_seq_len: int | None = None,
    ) -> Tensor: ...


_KERNELS_BY_NAME: dict[str, AttentionKernels] = {}


def register_kernels(name: str, kernels: AttentionKernels) -> None:
    """Make ``kernels`` available as ``name``; a name cannot be taken twice."""
    if not isinstance(kernels, AttentionKernels):
        raise TypeError(
            f"{kernels!r} is not an attention kernel set: it needs a 'name', "
            "'write_kv_cache' and 'paged_attention'"
        )
    registered = _KERNELS_BY_NAME.get(name)
    if registered is not None and registered is not kernels:
        raise ValueError(f"attention kernel set {name!r} is already registered")
    _KERNELS_BY_NAME[name] = kernels


def get_kernels(name: str) -> AttentionKernels:
    """The kernel set registered as ``name``."""
    try:
        return _KERNELS_BY_NAME[name]
    except KeyError:
        raise ValueError(
            f"unknown attention kernel set {name!r}; registered: "
            f"{', '.join(available_kernels())}"
        ) from None


def available_kernels() -> tuple[str, ...]:
    """Names of the registered kernel sets, sorted."""
    return tuple(sorted(_KERNELS_BY_NAME))


register_kernels("reference", REFERENCE_KERNELS)

__all__ = [
    "AttentionKernels",
    "available_kernels",
    "get_kernels",
    "register_kernels",
]
