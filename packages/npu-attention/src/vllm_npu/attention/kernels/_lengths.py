"""``HostLengths``: one part of a batch's per-request lengths, on the host.

Device kernels plan their launch from these lengths on the host; reading them back
from device tensors in every layer would wait for the device stream each time. The
attention metadata builder makes them once per step from vLLM's CPU copies and every
layer of the step passes them to ``paged_attention``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor


@dataclass(frozen=True)
class HostLengths:
    """Requests ``0..n-1`` of a ``paged_attention`` call, as Python ints and a host
    tensor: the same numbers as its ``query_start_loc`` / ``seq_lens`` arguments."""

    query_start_loc: tuple[int, ...]
    """``n + 1`` query row bounds; the first may be past 0 (rows before it are not
    the call's)."""
    seq_lens: tuple[int, ...]
    seq_lens_tensor: Tensor
    """``seq_lens`` as a host int32 tensor (what torch_npu's decode op takes)."""

    @classmethod
    def from_host(cls, query_start_loc: Tensor, seq_lens: Tensor) -> HostLengths:
        """From host tensors: ``query_start_loc`` ``[n + 1]``, ``seq_lens`` ``[n]``."""
        if query_start_loc.device.type != "cpu" or seq_lens.device.type != "cpu":
            raise ValueError("HostLengths.from_host takes CPU tensors (vLLM's *_cpu copies)")
        bounds = tuple(query_start_loc.tolist())
        lengths = tuple(seq_lens.tolist())
        if len(bounds) != len(lengths) + 1:
            raise ValueError(
                f"query_start_loc has {len(bounds)} entries for {len(lengths)} requests; "
                "it needs one more"
            )
        return cls(bounds, lengths, seq_lens.to(torch.int32, copy=True).contiguous())

    @property
    def num_reqs(self) -> int:
        return len(self.seq_lens)

    @property
    def query_lens(self) -> list[int]:
        return [end - start for start, end in pairwise(self.query_start_loc)]
