"""A test-only stand-in for ``torch_npu``: every op computes, in PyTorch on the CPU,
the result Ascend's documentation gives, and rejects what the real op rejects.

Never shipped and never on ``sys.path`` by default: tests put it there with
``vllm_npu.testing.standin``. Importing it attaches ``torch.npu`` (the device API
of a machine with ``VLLM_NPU_STANDIN_DEVICES`` NPUs, default 1) as torch_npu does.
No op here is a mock: a wrong layout, dtype or shape raises, as on an NPU. Tensors
"in NPU memory" are CPU tensors marked by ``torch_npu._device``; the ATB ops fail as
torch_npu's do when NNAL is missing (``torch_npu.op_plugin.atb._atb_ops``).
"""

from __future__ import annotations

import torch

from torch_npu import _attention, _calls, _device, _fusion_attention, _layers, _moe, atb, npu
from torch_npu._attention import *  # noqa: F403 (each op module lists its ops in __all__)
from torch_npu._fusion_attention import *  # noqa: F403
from torch_npu._layers import *  # noqa: F403
from torch_npu._moe import *  # noqa: F403
from torch_npu.op_plugin.atb import _atb_ops

# torch_npu X.Y.Z is built for torch X.Y.Z: the stand-in is the one for the torch it runs on.
__version__ = f"{torch.__version__.split('+')[0]}+standin"
__standin__ = True
"""Marks this module as the stand-in; the real torch_npu has no such attribute."""

torch.npu = npu  # type: ignore[attr-defined]
# Unlike torch_npu, PrivateUse1 is not renamed "npu": tensors stay on the CPU and
# torch.accelerator must keep seeing no accelerator.

__all__ = ["npu", *_attention.__all__, *_fusion_attention.__all__, *_layers.__all__, *_moe.__all__]  # noqa: PLE0604

for _name in __all__[1:]:
    _op = _device.device_op(globals()[_name])
    if _name in _atb_ops.ATB_OPS:
        _op = _atb_ops.lazy_load_atb_so(_op)
    globals()[_name] = _calls.recorded(_op)

for _name in atb.__all__:
    _op = _atb_ops.lazy_load_atb_so(_device.device_op(getattr(atb, _name)))
    setattr(atb, _name, _calls.recorded(_op))
