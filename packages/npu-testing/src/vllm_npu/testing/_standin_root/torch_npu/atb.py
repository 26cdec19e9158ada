"""``torch_npu.atb``: the ATB ops torch_npu exports in a submodule (they run on NNAL's
``libatb.so``, like the ``_npu_*`` ATB ops; see ``op_plugin.atb._atb_ops``)."""

from __future__ import annotations

from torch_npu._mla import npu_multi_head_latent_attention

__all__ = ["npu_multi_head_latent_attention"]
