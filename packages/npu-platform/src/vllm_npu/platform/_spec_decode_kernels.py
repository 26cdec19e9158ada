"""PyTorch replacements for the Triton kernels of vLLM's speculative-decoding sampler.

Each function computes what its namesake in ``vllm.v1.sample.rejection_sampler``
computes for the whole batch at once (the Triton kernels run one program per
request), takes the same arguments in the same order, and writes its output in
place. Pure PyTorch: the same code serves the host and the Ascend device.
"""

from __future__ import annotations

import torch

_PLACEHOLDER_TOKEN_ID = -1


def _draft_spans(
    cu_num_draft_tokens: torch.Tensor, max_spec_len: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per request and draft position: the flat token index, whether that position
    holds a draft token, and the request's number of draft tokens."""
    cu = cu_num_draft_tokens.to(torch.int64)
    starts = torch.cat([cu.new_zeros(1), cu[:-1]])
    counts = cu - starts
    positions = torch.arange(max_spec_len, device=cu.device)
    valid = positions[None, :] < counts[:, None]
    token_index = torch.where(valid, starts[:, None] + positions[None, :], 0)
    return token_index, valid, counts


def _write_until_first_rejection(
    output_token_ids: torch.Tensor,
    tokens: torch.Tensor,
    accepted: torch.Tensor,
    valid: torch.Tensor,
    counts: torch.Tensor,
    rows: torch.Tensor,
    bonus_token_ids: torch.Tensor,
) -> None:
    """Write ``tokens`` up to and including the first rejected position of each row
    in ``rows``, then the bonus token where every draft token was accepted."""
    rejected = valid & ~accepted
    rejected_before = (rejected.cumsum(dim=1) - rejected.to(torch.int64)) > 0
    write = valid & ~rejected_before & rows[:, None]
    width = tokens.shape[1]
    target = output_token_ids[:, :width]
    target.copy_(torch.where(write, tokens.to(target.dtype), target))
    all_accepted = rows & ~rejected.any(dim=1)
    batch = torch.arange(output_token_ids.shape[0], device=output_token_ids.device)
    bonus = bonus_token_ids.reshape(-1).to(output_token_ids.dtype)
    current = output_token_ids[batch, counts]
    output_token_ids[batch, counts] = torch.where(all_accepted, bonus, current)


def rejection_greedy_sample_kernel(
    output_token_ids_ptr: torch.Tensor,
    cu_num_draft_tokens_ptr: torch.Tensor,
    draft_token_ids_ptr: torch.Tensor,
    target_argmax_ptr: torch.Tensor,
    bonus_token_ids_ptr: torch.Tensor,
    is_greedy_ptr: torch.Tensor | None,
    max_spec_len: int,
    uniform_probs_ptr: torch.Tensor | None = None,
    synthetic_conditional_rates_ptr: torch.Tensor | None = None,
    SYNTHETIC_MODE: bool = False,  # noqa: N803 - the Triton kernel's argument names
) -> None:
    """Greedy requests: accept draft tokens while they equal the target argmax (in
    synthetic mode: while a uniform draw is below the position's rate)."""
    batch_size = output_token_ids_ptr.shape[0]
    if batch_size == 0:
        return
    token_index, valid, counts = _draft_spans(cu_num_draft_tokens_ptr, max_spec_len)
    draft = draft_token_ids_ptr.to(torch.int64)[token_index]
    target = target_argmax_ptr.to(torch.int64)[token_index]
    if SYNTHETIC_MODE:
        assert uniform_probs_ptr is not None and synthetic_conditional_rates_ptr is not None
        rates = synthetic_conditional_rates_ptr[:max_spec_len].to(torch.float64)
        uniform = uniform_probs_ptr.to(torch.float64)[token_index]
        accepted = (uniform < rates[None, : uniform.shape[1]]) & (draft >= 0)
        tokens = torch.where(accepted, draft, target)
    else:
        accepted = draft == target
        tokens = target
    rows = (
        torch.ones(batch_size, dtype=torch.bool, device=output_token_ids_ptr.device)
        if is_greedy_ptr is None
        else is_greedy_ptr.to(torch.bool)
    )
    _write_until_first_rejection(
        output_token_ids_ptr, tokens, accepted, valid, counts, rows, bonus_token_ids_ptr
    )


def rejection_random_sample_kernel(
    output_token_ids_ptr: torch.Tensor,
    cu_num_draft_tokens_ptr: torch.Tensor,
    draft_token_ids_ptr: torch.Tensor,
    draft_probs_ptr: torch.Tensor | None,
    target_probs_ptr: torch.Tensor,
    bonus_token_ids_ptr: torch.Tensor,
    recovered_token_ids_ptr: torch.Tensor,
    uniform_probs_ptr: torch.Tensor,
    is_greedy_ptr: torch.Tensor,
    max_spec_len: int,
    vocab_size: int,
    synthetic_conditional_rates_ptr: torch.Tensor | None = None,
    NO_DRAFT_PROBS: bool = False,  # noqa: N803 - the Triton kernel's argument names
    SYNTHETIC_MODE: bool = False,  # noqa: N803
) -> None:
    """Sampled requests: accept a draft token with probability min(1, p_target /
    p_draft), else emit its recovered token and stop."""
    batch_size = output_token_ids_ptr.shape[0]
    if batch_size == 0:
        return
    token_index, valid, counts = _draft_spans(cu_num_draft_tokens_ptr, max_spec_len)
    draft = draft_token_ids_ptr.to(torch.int64)[token_index]
    uniform = uniform_probs_ptr.to(torch.float64)[token_index]
    if SYNTHETIC_MODE:
        assert synthetic_conditional_rates_ptr is not None
        rates = synthetic_conditional_rates_ptr[:max_spec_len].to(torch.float64)
        accepted = uniform < rates[None, : uniform.shape[1]]
    else:
        vocab_index = draft.clamp(min=0, max=vocab_size - 1)
        target_prob = target_probs_ptr[token_index, vocab_index].to(torch.float64)
        if NO_DRAFT_PROBS:
            draft_prob = torch.ones_like(target_prob)
        else:
            assert draft_probs_ptr is not None
            draft_prob = draft_probs_ptr[token_index, vocab_index].to(torch.float64)
        safe_draft_prob = torch.where(draft_prob > 0, draft_prob, 1.0)
        accepted = (draft_prob > 0) & (target_prob / safe_draft_prob >= uniform)
    accepted = accepted & (draft >= 0)
    recovered = recovered_token_ids_ptr.to(torch.int64)[token_index]
    tokens = torch.where(accepted, draft, recovered)
    rows = ~is_greedy_ptr.to(torch.bool)
    _write_until_first_rejection(
        output_token_ids_ptr, tokens, accepted, valid, counts, rows, bonus_token_ids_ptr
    )


def expand_kernel(
    output_ptr: torch.Tensor,
    input_ptr: torch.Tensor,
    cu_num_tokens_ptr: torch.Tensor,
    replace_from: int,
    replace_to: int,
    MAX_NUM_TOKENS: int | None = None,  # noqa: N803 - the Triton kernel's argument names
) -> None:
    """Repeat each request's value over its tokens, ``replace_from`` becoming
    ``replace_to``."""
    if input_ptr.shape[0] == 0:
        return
    cu = cu_num_tokens_ptr.to(torch.int64)
    counts = cu - torch.cat([cu.new_zeros(1), cu[:-1]])
    values = torch.where(input_ptr == replace_from, replace_to, input_ptr)
    expanded = torch.repeat_interleave(values, counts)
    output_ptr[: expanded.shape[0]] = expanded.to(output_ptr.dtype)


def sample_recovered_tokens_kernel(
    output_token_ids_ptr: torch.Tensor,
    cu_num_draft_tokens_ptr: torch.Tensor,
    draft_token_ids_ptr: torch.Tensor,
    draft_probs_ptr: torch.Tensor | None,
    target_probs_ptr: torch.Tensor,
    inv_q_ptr: torch.Tensor,
    vocab_size: int,
    BLOCK_SIZE: int | None = None,  # noqa: N803 - the Triton kernel's argument names
    NO_DRAFT_PROBS: bool = False,  # noqa: N803
    USE_FP64_GUMBEL: bool = False,  # noqa: N803
) -> None:
    """For every draft position: argmax over the vocabulary of the residual
    probability (target minus draft, clipped at 0; without draft probabilities the
    target with the draft token removed) times the request's exponential noise."""
    cu = cu_num_draft_tokens_ptr.to(torch.int64)
    counts = cu - torch.cat([cu.new_zeros(1), cu[:-1]])
    num_tokens = int(cu[-1]) if cu.numel() else 0
    if num_tokens == 0:
        return
    req_of_token = torch.repeat_interleave(torch.arange(cu.shape[0], device=cu.device), counts)
    target = target_probs_ptr[:num_tokens, :vocab_size]
    if NO_DRAFT_PROBS:
        draft_ids = draft_token_ids_ptr[:num_tokens].to(torch.int64)
        vocab = torch.arange(vocab_size, device=target.device)
        prob = torch.where(vocab[None, :] == draft_ids[:, None], 0.0, target)
    else:
        assert draft_probs_ptr is not None
        prob = (target - draft_probs_ptr[:num_tokens, :vocab_size]).clamp(min=0.0)
    noise = inv_q_ptr[req_of_token, :vocab_size]
    score = prob.to(noise.dtype) * noise
    recovered = score.argmax(dim=1).clamp(max=vocab_size - 1)
    output_token_ids_ptr[:num_tokens] = recovered.to(output_token_ids_ptr.dtype)
