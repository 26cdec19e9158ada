"""The host LoRA ops patches: our PyTorch bgmv ops leave tokens without an adapter
(lora index -1) alone, as vLLM 0.33's do, and replace vLLM's on the releases whose
ops give such tokens the last slot's adapter."""

from __future__ import annotations

import pytest
import torch

from vllm_npu.patches import PatchManager, PatchStatus, fingerprint_of
from vllm_npu.patches._lora_ops import (
    bgmv_expand,
    bgmv_expand_slice,
    bgmv_shrink,
    ops_give_unadapted_tokens_an_adapter,
)
from vllm_npu.patches.declared.host_lora_ops import HOST_LORA_OPS_PATCHES
from vllm_npu.platform.versions import vllm_version

TOKENS, IN, OUT, SLOTS = 5, 4, 6, 3
INDICES = torch.tensor([2, -1, 0, -1, 2])


def _gemv(inputs: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Token by token: x_t @ W[index_t]^T, zero for index -1."""
    rows = [
        torch.zeros(weights.shape[-2]) if index < 0 else weights[index].reshape(
            weights.shape[-2], weights.shape[-1]
        ) @ inputs[token]
        for token, index in enumerate(indices.tolist())
    ]
    return torch.stack(rows)


@pytest.fixture
def tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(TOKENS, IN, generator=generator)
    weights = torch.randn(SLOTS, OUT, IN, generator=generator)
    before = torch.randn(TOKENS, OUT + 2, generator=generator)
    return inputs, weights, before


def test_shrink_gives_tokens_without_an_adapter_zero(tensors) -> None:
    inputs, weights, _ = tensors
    output = torch.full((TOKENS, OUT), 7.0)
    bgmv_shrink(inputs, weights.unsqueeze(1), output, INDICES, 0.5)
    torch.testing.assert_close(output, 0.5 * _gemv(inputs, weights, INDICES))
    assert (output[INDICES == -1] == 0).all()


@pytest.mark.parametrize("add_inputs", [True, False])
def test_expand_leaves_rows_without_an_adapter_alone(tensors, add_inputs: bool) -> None:
    inputs, weights, before = tensors
    output = before.clone()  # wider than the adapter's output: its padding stays
    bgmv_expand(inputs, weights, output, INDICES, add_inputs)
    products = _gemv(inputs, weights, INDICES)
    expected = before.clone()
    adapted = INDICES != -1
    if add_inputs:
        expected[:, :OUT] += products
    else:
        expected[adapted, :OUT] = products[adapted]
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(output[~adapted], before[~adapted])


def test_expand_of_one_token_broadcasts_over_the_output(tensors) -> None:
    inputs, weights, before = tensors
    output = before[:, :OUT].clone()
    bgmv_expand(inputs[:1], weights, output, INDICES[:1], add_inputs=True)
    torch.testing.assert_close(output, before[:, :OUT] + _gemv(inputs[:1], weights, INDICES[:1]))


@pytest.mark.parametrize("add_inputs", [True, False])
def test_expand_slice_leaves_rows_without_an_adapter_alone(tensors, add_inputs: bool) -> None:
    inputs, weights, _ = tensors
    before = torch.randn(TOKENS, 2 * OUT, generator=torch.Generator().manual_seed(1))
    output = before.clone()
    bgmv_expand_slice(inputs, weights.unsqueeze(1), output, INDICES, OUT, OUT, add_inputs)
    products = _gemv(inputs, weights, INDICES)
    expected = before.clone()
    adapted = INDICES != -1
    if add_inputs:
        expected[:, OUT:] += products
    else:
        expected[adapted, OUT:] = products[adapted]
    torch.testing.assert_close(output, expected)


def test_the_detector_tells_our_ops_from_ones_with_the_bug() -> None:
    def expand_with_the_bug(inputs, weights, output, indices, add_inputs=True):
        output += torch.einsum("bi, boi -> bo", inputs, weights[indices])

    assert ops_give_unadapted_tokens_an_adapter(expand_with_the_bug)
    assert not ops_give_unadapted_tokens_an_adapter(bgmv_expand)


def _in_range() -> bool:
    from packaging.specifiers import SpecifierSet

    release = vllm_version().release
    return release is not None and release in SpecifierSet(HOST_LORA_OPS_PATCHES[0].vllm_versions)


@pytest.fixture
def lora_manager(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("VLLM_NPU_DISABLE_PATCHES", raising=False)
    patches = PatchManager(HOST_LORA_OPS_PATCHES)
    yield patches
    patches.revert()


def test_vllm_ops_have_the_bug_exactly_in_the_patched_range() -> None:
    from vllm.lora.ops.torch_ops import lora_ops

    assert ops_give_unadapted_tokens_an_adapter(lora_ops.bgmv_expand) == _in_range()


@pytest.mark.skipif(not _in_range(), reason="the installed vLLM's ops are fixed")
def test_fingerprints_match_the_installed_vllm() -> None:
    from vllm.lora.ops.torch_ops import lora_ops

    for patch in HOST_LORA_OPS_PATCHES:
        assert fingerprint_of(getattr(lora_ops, patch.qualname)) == patch.fingerprint, patch.id


@pytest.mark.skipif(not _in_range(), reason="the installed vLLM's ops are fixed")
def test_punica_cpu_runs_our_ops_once_patched(lora_manager, tensors) -> None:
    import vllm.lora.ops.torch_ops as torch_ops
    from vllm.lora.ops.torch_ops import lora_ops
    from vllm.lora.punica_wrapper import punica_cpu

    originals = {name: getattr(lora_ops, name) for name in ("bgmv_expand", "bgmv_shrink")}
    outcomes = lora_manager.apply("worker")
    assert {o.status for o in outcomes.values()} == {PatchStatus.APPLIED}
    for namespace in (lora_ops, torch_ops, punica_cpu):
        assert not ops_give_unadapted_tokens_an_adapter(namespace.bgmv_expand)
    # The prefill op (sgmv_*) calls lora_ops' bgmv_* by global name.
    inputs, weights, before = tensors
    output = before[:, :OUT].clone()
    ones = torch.ones(TOKENS, dtype=torch.long)
    punica_cpu.sgmv_expand(
        inputs, weights, output, None, ones, INDICES, TOKENS, 1, TOKENS, add_inputs=True
    )
    torch.testing.assert_close(output, before[:, :OUT] + _gemv(inputs, weights, INDICES))
    lora_manager.revert()
    for namespace in (lora_ops, torch_ops, punica_cpu):
        assert namespace.bgmv_expand is originals["bgmv_expand"]
        assert namespace.bgmv_shrink is originals["bgmv_shrink"]


@pytest.mark.skipif(_in_range(), reason="the installed vLLM's ops have the bug")
def test_not_applied_where_vllm_fixed_its_ops(lora_manager, monkeypatch) -> None:
    outcomes = lora_manager.apply("worker")
    assert {o.status for o in outcomes.values()} == {PatchStatus.SKIPPED_OUT_OF_RANGE}
    lora_manager.revert()
    # Told it is an older release, the detector still sees fixed ops: not needed.
    monkeypatch.setenv("VLLM_NPU_VLLM_VERSION", "0.32.0")
    outcomes = lora_manager.apply("worker")
    assert {o.status for o in outcomes.values()} == {PatchStatus.NOT_NEEDED}


@pytest.mark.skipif(_in_range(), reason="the installed vLLM's ops have the bug")
def test_our_ops_agree_with_vllms_fixed_ones(tensors) -> None:
    from vllm.lora.ops.torch_ops import lora_ops

    inputs, weights, before = tensors
    for add_inputs in (True, False):
        ours, theirs = before.clone(), before.clone()
        bgmv_expand(inputs, weights, ours, INDICES, add_inputs)
        lora_ops.bgmv_expand(inputs, weights, theirs, INDICES, add_inputs)
        torch.testing.assert_close(ours, theirs)
        ours, theirs = before.clone(), before.clone()
        bgmv_expand_slice(inputs, weights, ours, INDICES, 1, OUT, add_inputs)
        lora_ops.bgmv_expand_slice(inputs, weights, theirs, INDICES, 1, OUT, add_inputs)
        torch.testing.assert_close(ours, theirs)
    ours, theirs = torch.ones(TOKENS, OUT), torch.ones(TOKENS, OUT)
    bgmv_shrink(inputs, weights, ours, INDICES, 0.25)
    lora_ops.bgmv_shrink(inputs, weights, theirs, INDICES, 0.25)
    torch.testing.assert_close(ours, theirs)
