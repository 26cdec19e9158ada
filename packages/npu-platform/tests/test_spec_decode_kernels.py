"""The rejection sampler's PyTorch kernels against a line-by-line port of vLLM's
Triton kernels (one request at a time), and their installation into vLLM."""

from __future__ import annotations

import pytest
import torch

from vllm_npu.platform import _compat, _spec_decode_kernels

PLACEHOLDER = -1


def _spans(cu_num_draft_tokens: list[int]) -> list[tuple[int, int]]:
    starts = [0, *cu_num_draft_tokens[:-1]]
    return list(zip(starts, cu_num_draft_tokens, strict=True))


def _greedy_per_request(cu, draft, target_argmax, bonus, is_greedy, max_spec_len):
    output = [[PLACEHOLDER] * (max_spec_len + 1) for _ in cu]
    for req, (start, end) in enumerate(_spans(cu)):
        if is_greedy is not None and not is_greedy[req]:
            continue
        rejected = False
        for pos in range(end - start):
            if not rejected:
                output[req][pos] = target_argmax[start + pos]
                rejected = draft[start + pos] != target_argmax[start + pos]
        if not rejected:
            output[req][end - start] = bonus[req]
    return output


def _random_per_request(
    cu, draft, draft_probs, target_probs, bonus, recovered, uniform, is_greedy, max_spec_len
):
    output = [[PLACEHOLDER] * (max_spec_len + 1) for _ in cu]
    for req, (start, end) in enumerate(_spans(cu)):
        if is_greedy[req]:
            continue
        rejected = False
        for pos in range(end - start):
            if rejected:
                continue
            token = draft[start + pos]
            if token < 0:
                accepted = False
            else:
                draft_prob = 1.0 if draft_probs is None else draft_probs[start + pos][token]
                target_prob = target_probs[start + pos][token]
                accepted = draft_prob > 0 and target_prob / draft_prob >= uniform[start + pos]
            if accepted:
                output[req][pos] = token
            else:
                rejected = True
                output[req][pos] = recovered[start + pos]
        if not rejected:
            output[req][end - start] = bonus[req]
    return output


def _case(seed: int, vocab_size: int = 11, max_spec_len: int = 4):
    generator = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, max_spec_len + 1, (6,), generator=generator)
    cu = counts.cumsum(0).to(torch.int32)
    num_tokens = int(cu[-1])
    target_argmax = torch.randint(0, vocab_size, (num_tokens,), generator=generator)
    # Half of the draft tokens agree with the target, some are padding (-1).
    draft = torch.where(
        torch.rand(num_tokens, generator=generator) < 0.5,
        target_argmax,
        torch.randint(-1, vocab_size, (num_tokens,), generator=generator),
    ).to(torch.int32)
    bonus = torch.randint(0, vocab_size, (6, 1), generator=generator)
    is_greedy = torch.rand(6, generator=generator) < 0.5
    return cu, draft, target_argmax, bonus, is_greedy, max_spec_len, generator


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("all_greedy", [True, False])
def test_greedy_kernel_equals_the_per_request_loop(seed: int, all_greedy: bool) -> None:
    cu, draft, target_argmax, bonus, is_greedy, max_spec_len, _ = _case(seed)
    greedy_rows = None if all_greedy else is_greedy
    output = torch.full((6, max_spec_len + 1), PLACEHOLDER, dtype=torch.int32)
    _spec_decode_kernels.rejection_greedy_sample_kernel(
        output, cu, draft, target_argmax, bonus, greedy_rows, max_spec_len, None, None,
        SYNTHETIC_MODE=False,
    )
    expected = _greedy_per_request(
        cu.tolist(),
        draft.tolist(),
        target_argmax.tolist(),
        bonus.reshape(-1).tolist(),
        None if greedy_rows is None else greedy_rows.tolist(),
        max_spec_len,
    )
    assert output.tolist() == expected


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("with_draft_probs", [True, False])
def test_random_kernel_equals_the_per_request_loop(seed: int, with_draft_probs: bool) -> None:
    cu, draft, _, bonus, is_greedy, max_spec_len, generator = _case(seed)
    num_tokens, vocab_size = draft.shape[0], 11
    target_probs = torch.rand(num_tokens, vocab_size, generator=generator).softmax(-1)
    draft_probs = (
        torch.rand(num_tokens, vocab_size, generator=generator).softmax(-1)
        if with_draft_probs
        else None
    )
    recovered = torch.randint(0, vocab_size, (num_tokens,), generator=generator).to(torch.int32)
    uniform = torch.rand(num_tokens, generator=generator, dtype=torch.float64) * 0.3
    output = torch.full((6, max_spec_len + 1), PLACEHOLDER, dtype=torch.int32)
    _spec_decode_kernels.rejection_random_sample_kernel(
        output, cu, draft, draft_probs, target_probs, bonus, recovered, uniform, is_greedy,
        max_spec_len, vocab_size, None, NO_DRAFT_PROBS=draft_probs is None, SYNTHETIC_MODE=False,
    )
    expected = _random_per_request(
        cu.tolist(),
        draft.tolist(),
        None if draft_probs is None else draft_probs.tolist(),
        target_probs.tolist(),
        bonus.reshape(-1).tolist(),
        recovered.tolist(),
        uniform.tolist(),
        is_greedy.tolist(),
        max_spec_len,
    )
    assert output.tolist() == expected
    assert any(row[0] != PLACEHOLDER for row in expected), "no sampled request ran"


def test_expand_kernel_repeats_each_value_over_its_tokens() -> None:
    values = torch.tensor([5, 0, 7], dtype=torch.int32)
    cu = torch.tensor([2, 2, 5], dtype=torch.int32)
    output = torch.full((5,), -9, dtype=torch.int32)
    _spec_decode_kernels.expand_kernel(output, values, cu, 0, 3, MAX_NUM_TOKENS=4)
    assert output.tolist() == [5, 5, 7, 7, 7]


@pytest.mark.parametrize("with_draft_probs", [True, False])
def test_recovered_tokens_are_the_argmax_of_the_noisy_residual(with_draft_probs: bool) -> None:
    generator = torch.Generator().manual_seed(3)
    cu = torch.tensor([2, 2, 5], dtype=torch.int32)
    vocab_size = 9
    draft = torch.tensor([1, 4, -1, 0, 8], dtype=torch.int32)
    target_probs = torch.rand(5, vocab_size, generator=generator).softmax(-1)
    draft_probs = (
        torch.rand(5, vocab_size, generator=generator).softmax(-1) if with_draft_probs else None
    )
    inv_q = torch.rand(3, vocab_size, generator=generator).reciprocal()
    output = torch.full((5,), -9, dtype=torch.int32)
    _spec_decode_kernels.sample_recovered_tokens_kernel(
        output, cu, draft, draft_probs, target_probs, inv_q, vocab_size,
        BLOCK_SIZE=8192, NO_DRAFT_PROBS=draft_probs is None, USE_FP64_GUMBEL=False,
    )
    request_of_token = [0, 0, 2, 2, 2]
    for token, request in enumerate(request_of_token):
        if draft_probs is None:
            residual = target_probs[token].clone()
            if draft[token] >= 0:
                residual[draft[token]] = 0.0
        else:
            residual = (target_probs[token] - draft_probs[token]).clamp(min=0.0)
        assert output[token] == int((residual * inv_q[request]).argmax())


def test_installed_kernels_replace_vllms(monkeypatch: pytest.MonkeyPatch) -> None:
    """After installation every rejection-sampler kernel vLLM launches is ours."""
    from vllm.v1.sample import rejection_sampler

    for name in _compat.REJECTION_SAMPLER_KERNELS:
        monkeypatch.setattr(rejection_sampler, name, getattr(rejection_sampler, name))
    how = _compat.register_rejection_sampler_kernels()
    assert how in ("dispatcher", "module attributes")
    for name in _compat.REJECTION_SAMPLER_KERNELS:
        kernel = getattr(rejection_sampler, name)
        assert getattr(kernel, "func", None) is getattr(_spec_decode_kernels, name), name
    output = torch.full((1, 3), PLACEHOLDER, dtype=torch.int32)
    rejection_sampler.rejection_greedy_sample_kernel[(1,)](
        output,
        torch.tensor([2], dtype=torch.int32),
        torch.tensor([4, 6], dtype=torch.int32),
        torch.tensor([4, 6]),
        torch.tensor([[9]]),
        None,
        2,
        None,
        None,
        SYNTHETIC_MODE=False,
    )
    assert output.tolist() == [[4, 6, 9]]


class _LoadsAnExtensionOnLookup:
    """Like humming 0.1.16's ``DeviceInfo``: no ``__dict__``, and any attribute it
    lacks loads a CUDA extension, so ``hasattr(value, "__dict__")`` raises."""

    __slots__ = ()

    def __getattr__(self, name: str) -> object:
        raise ImportError("libcuda.so.1: cannot open shared object file")


def test_installation_survives_a_module_vllms_scan_cannot_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """vLLM's kernel dispatcher (0.31 on) reads every loaded module; one value
    that raises on it (humming.device, off CUDA) must not stop the installation,
    and the module is left loaded."""
    import sys
    import types

    from vllm.v1.sample import rejection_sampler

    for name in _compat.REJECTION_SAMPLER_KERNELS:
        monkeypatch.setattr(rejection_sampler, name, getattr(rejection_sampler, name))
    unreadable = types.ModuleType("unreadable_device_info")
    unreadable.current_device = _LoadsAnExtensionOnLookup()
    monkeypatch.setitem(sys.modules, unreadable.__name__, unreadable)

    _compat.register_rejection_sampler_kernels()

    assert sys.modules[unreadable.__name__] is unreadable
    kernel = rejection_sampler.expand_kernel
    assert getattr(kernel, "func", None) is _spec_decode_kernels.expand_kernel
