"""Host linear layers on packed oneDNN weights: same results as F.linear, only the
layers that are plain unquantized linear layers, one packed weight per live layer."""

from __future__ import annotations

import gc

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from vllm.model_executor.layers.linear import UnquantizedLinearMethod
from vllm.model_executor.layers.vocab_parallel_embedding import (
    ParallelLMHead,
    UnquantizedEmbeddingMethod,
)

from vllm_npu.worker import packed_linear as _packed_linear
from vllm_npu.worker.packed_linear import PACKED_LINEAR_ENV, pack_linear_layers

pytestmark = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="torch without oneDNN"
)


class Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, seed: int, **kwargs) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(
            torch.randn(out_features, in_features, generator=gen, **kwargs),
            requires_grad=False,
        )
        self.quant_method = UnquantizedLinearMethod()

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return self.quant_method.apply(self, x, bias)


class OtherMethod(UnquantizedLinearMethod):
    """Stands for a quantized method: not ours to replace."""


def lm_head(vocab: int, hidden: int) -> ParallelLMHead:
    head = ParallelLMHead.__new__(ParallelLMHead)  # its __init__ needs a TP group
    nn.Module.__init__(head)
    head.weight = nn.Parameter(torch.randn(vocab, hidden), requires_grad=False)
    head.quant_method = UnquantizedEmbeddingMethod()
    return head


def model(seed: int = 0) -> nn.Module:
    return nn.ModuleDict(
        {
            "qkv": Linear(64, 96, seed),
            "down": Linear(128, 64, seed + 1),
            "bf16": Linear(64, 64, seed + 2, dtype=torch.bfloat16),
            "quantized": Linear(64, 64, seed + 3),
            "small": Linear(8, 8, seed + 4),
            "lm_head": lm_head(256, 64),
        }
    )


@pytest.fixture(autouse=True)
def packing_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PACKED_LINEAR_ENV, raising=False)
    monkeypatch.setattr(_packed_linear, "MIN_PACKED_ELEMENTS", 1024)


def test_packed_layers_compute_what_f_linear_does() -> None:
    layers = model()
    layers["quantized"].quant_method = OtherMethod()
    before = {name: layer.quant_method for name, layer in layers.items()}
    assert pack_linear_layers(layers) == 3
    packed = {
        name for name, layer in layers.items() if layer.quant_method is not before[name]
    }
    assert packed == {"qkv", "down", "lm_head"}
    for batch in (1, 7, 300):
        for name in ("qkv", "down", "lm_head"):
            layer = layers[name]
            x = torch.randn(batch, layer.weight.shape[1])
            bias = torch.randn(layer.weight.shape[0])
            for b in (None, bias):
                got = layer.quant_method.apply(layer, x, b)
                assert torch.allclose(got, F.linear(x, layer.weight, b), atol=1e-4, rtol=1e-5)
    # The wrapped method is still there for everything but apply.
    qkv = layers["qkv"].quant_method
    assert qkv.process_weights_after_loading == before["qkv"].process_weights_after_loading
    # Inputs of more than two dims keep their leading dims.
    x = torch.randn(2, 3, 64)
    assert layers["qkv"](x).shape == (2, 3, 96)


def test_two_live_models_keep_their_own_weights() -> None:
    first, second = model(seed=0), model(seed=10)
    pack_linear_layers(first)
    pack_linear_layers(second)
    x = torch.randn(4, 64)
    for layers in (first, second):
        expected = F.linear(x, layers["qkv"].weight)
        assert torch.allclose(layers["qkv"](x), expected, atol=1e-4, rtol=1e-5)
    del first
    gc.collect()
    third = model(seed=20)
    pack_linear_layers(third)  # reuses the freed layer's name, drops freed entries
    assert torch.allclose(third["qkv"](x), F.linear(x, third["qkv"].weight), atol=1e-4)
    assert all(owner() is not None for owner in _packed_linear._LAYERS.values())


def test_traceable_by_torch_compile() -> None:
    layers = model()
    pack_linear_layers(layers)
    compiled = torch.compile(lambda x: layers["down"](x), backend="aot_eager", fullgraph=True)
    x = torch.randn(5, 128)
    assert torch.allclose(compiled(x), F.linear(x, layers["down"].weight), atol=1e-4)


def test_unpacked_layer_falls_back_to_its_weight() -> None:
    """A graph compiled where layers were packed may run where they are not."""
    layer = Linear(64, 32, seed=5)
    x = torch.randn(3, 64)
    got = torch.ops.vllm_npu.packed_linear(x, layer.weight, None, "never.packed")
    assert torch.equal(got, F.linear(x, layer.weight))


def test_switched_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PACKED_LINEAR_ENV, "0")
    layers = model()
    assert pack_linear_layers(layers) == 0
    assert type(layers["qkv"].quant_method) is UnquantizedLinearMethod
    monkeypatch.setenv(PACKED_LINEAR_ENV, "sometimes")
    with pytest.raises(ValueError, match="VLLM_NPU_HOST_PACKED_LINEAR='sometimes': use 1"):
        pack_linear_layers(layers)
