"""The host backend's linear layers on oneDNN, each weight packed once after loading.

vLLM's CPU backend does the same (``dispatch_cpu_unquantized_gemm``): oneDNN's matmul
on a weight laid out for it in advance is 1.3-1.6x faster than ``F.linear`` on
decode-sized batches, the more so when the weights do not fit in the caches. Each
unquantized linear layer (and the LM head) keeps its weight and gets a packed copy;
its quant method is wrapped so that ``apply`` calls ``vllm_npu::packed_linear``, a
custom op (opaque to torch.compile, so compiled graphs name layers, not weights) that
finds the packed weight by the layer's name.
Results equal ``F.linear``'s up to float rounding. ``VLLM_NPU_HOST_PACKED_LINEAR=0``
turns it off.
"""

from __future__ import annotations

import itertools
import os
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from vllm.logger import init_logger

logger = init_logger("vllm.vllm_npu.worker")

PACKED_LINEAR_ENV = "VLLM_NPU_HOST_PACKED_LINEAR"
PACKED_DTYPES = (torch.float32,)
"""Weight dtypes packed (bf16 oneDNN kernels need CPU features many hosts lack)."""
MIN_PACKED_ELEMENTS = 128 * 1024
"""Smaller weights stay on ``F.linear``, as fast there (measured: 128 x 512 is slower
packed, 512 x 512 faster)."""
_PACKED_ATTR = "_vllm_npu_packed_weight"

_LAYERS: dict[str, weakref.ReferenceType[nn.Module]] = {}
"""Layer of each key, which holds the packed weight (freed with the layer)."""


def _linear(x: Tensor, weight: Tensor, bias: Tensor | None, packed: Tensor | None) -> Tensor:
    if packed is None:
        return F.linear(x, weight, bias)
    flat = x.reshape(-1, x.shape[-1])
    out = torch.ops.mkldnn._linear_pointwise(flat, packed, bias, "none", [], "")
    return out.view(*x.shape[:-1], weight.shape[0])


@torch.library.custom_op("vllm_npu::packed_linear", mutates_args=())
def packed_linear(x: Tensor, weight: Tensor, bias: Tensor | None, key: str) -> Tensor:
    """``F.linear(x, weight, bias)``, on the packed copy of ``weight`` that layer ``key``
    holds; on ``weight`` itself where no live layer of that name has one (a graph
    compiled in a process that packed, run in one that does not)."""
    owner = _LAYERS.get(key)
    layer = owner() if owner is not None else None
    return _linear(x, weight, bias, getattr(layer, _PACKED_ATTR, None))


@packed_linear.register_fake
def _(x: Tensor, weight: Tensor, bias: Tensor | None, key: str) -> Tensor:
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


class PackedLinearMethod:
    """A layer's unquantized method, its ``apply`` on the packed weight; anything
    else is the wrapped method's."""

    def __init__(self, method: Any, key: str) -> None:
        self.method = method
        self.key = key

    def apply(self, layer: nn.Module, x: Tensor, bias: Tensor | None = None) -> Tensor:
        if torch.compiler.is_compiling():
            return torch.ops.vllm_npu.packed_linear(x, layer.weight, bias, self.key)
        # Eager: the layer at hand holds the packed weight; no op dispatch, no lookup.
        return _linear(x, layer.weight, bias, getattr(layer, _PACKED_ATTR))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["method"], name)


def packing_enabled() -> bool:
    value = os.environ.get(PACKED_LINEAR_ENV, "").strip().lower()
    if value in ("", "1", "true"):
        return torch.backends.mkldnn.is_available()
    if value in ("0", "false"):
        return False
    raise ValueError(f"{PACKED_LINEAR_ENV}={value!r}: use 1 (default) or 0.")


def _packable(module: nn.Module) -> bool:
    from vllm.model_executor.layers.linear import UnquantizedLinearMethod
    from vllm.model_executor.layers.vocab_parallel_embedding import (
        ParallelLMHead,
        UnquantizedEmbeddingMethod,
    )

    method = getattr(module, "quant_method", None)
    weight = getattr(module, "weight", None)
    linear = type(method) is UnquantizedLinearMethod or (
        isinstance(module, ParallelLMHead) and type(method) is UnquantizedEmbeddingMethod
    )
    return (
        linear
        and isinstance(weight, Tensor)
        and weight.dim() == 2
        and weight.device.type == "cpu"
        and weight.dtype in PACKED_DTYPES
        and weight.numel() >= MIN_PACKED_ELEMENTS
    )


def pack_linear_layers(model: nn.Module) -> int:
    """Pack the weight of every unquantized linear layer of ``model`` (see the module
    docstring); returns how many were packed."""
    if not packing_enabled():
        return 0
    count = 0
    for name, module in model.named_modules():
        if not _packable(module):
            continue
        key = name
        for suffix in itertools.count(1):  # another live model has a layer of this name
            owner = _LAYERS.get(key)
            if owner is None or owner() is None or owner() is module:
                break
            key = f"{name}#{suffix}"
        weight = module.weight.detach()
        setattr(module, _PACKED_ATTR, torch.ops.mkldnn._reorder_linear_weight(weight, 32))
        _LAYERS[key] = weakref.ref(module)
        module.quant_method = PackedLinearMethod(module.quant_method, key)
        count += 1
    for key in [key for key, owner in _LAYERS.items() if owner() is None]:
        del _LAYERS[key]
    logger.info("Host linear layers on oneDNN: %d weights packed.", count)
    return count
