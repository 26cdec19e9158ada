"""Transformers references for vLLM's sampling features, with the closest decision each
one took: greedy decoding under vLLM's penalty rules, beam search as vLLM runs it, and
next-token log-probabilities.

A decision closer than a lower precision's rounding error (float16 on the Ascend
path) may go either way in two correct implementations; tests in float16 check only
the prompts whose decisions are clear (see ``hf_greedy_margins``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM


@dataclass(frozen=True)
class Penalties:
    """vLLM's ``repetition_penalty``, ``presence_penalty`` and ``frequency_penalty``."""

    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


@dataclass(frozen=True)
class Decoded:
    """A reference's output for one prompt and its closest decision (``margin``: the
    smallest gap between a chosen score and the best one not chosen)."""

    token_ids: tuple[tuple[int, ...], ...]
    """One sequence for greedy decoding; the beams, best first, for beam search."""
    margin: float


def load_reference_model(
    model_path: str | os.PathLike[str], dtype: torch.dtype = torch.float32
) -> torch.nn.Module:
    """The checkpoint in ``dtype`` with eager attention, in evaluation mode."""
    return AutoModelForCausalLM.from_pretrained(
        model_path, dtype=dtype, attn_implementation="eager"
    ).eval()


def next_token_log_probs(model: torch.nn.Module, token_ids: Sequence[int]) -> torch.Tensor:
    """float32 log-probabilities of the next token at every position of ``token_ids``,
    ``[len(token_ids), vocab]``."""
    with torch.inference_mode():
        logits = model(torch.tensor([list(token_ids)])).logits[0]
    return torch.log_softmax(logits.float(), dim=-1)


def penalized_greedy(
    model: torch.nn.Module, prompt: Sequence[int], steps: int, penalties: Penalties
) -> Decoded:
    """Greedy decoding with vLLM's penalty rules: the repetition penalty divides positive
    (multiplies negative) logits of tokens seen in the prompt or the output; frequency
    and presence penalties subtract per output occurrence and once per output token."""
    prompt = list(prompt)
    output: list[int] = []
    margin = float("inf")
    for _ in range(steps):
        with torch.no_grad():
            logits = model(torch.tensor([prompt + output])).logits[0, -1].float()
        seen = torch.zeros_like(logits, dtype=torch.bool)
        seen[prompt + output] = True
        penalty = torch.where(seen, penalties.repetition_penalty, 1.0)
        logits *= torch.where(logits > 0, 1.0 / penalty, penalty)
        counts = torch.bincount(torch.tensor(output, dtype=torch.long), minlength=len(logits))
        logits -= penalties.frequency_penalty * counts
        logits -= penalties.presence_penalty * (counts > 0)
        best, runner_up = logits.topk(2).values.tolist()
        margin = min(margin, best - runner_up)
        output.append(int(logits.argmax()))
    return Decoded((tuple(output),), margin)


def transformers_beam_search(
    model: torch.nn.Module, prompt: Sequence[int], beam_width: int, steps: int
) -> list[list[int]]:
    """transformers' own beam search, set up as ``vllm.LLM.beam_search`` runs (no EOS,
    length penalty 1, exactly ``steps`` new tokens): each beam's new tokens, best first."""
    from transformers import GenerationConfig

    config = GenerationConfig(
        do_sample=False,
        num_beams=beam_width,
        num_return_sequences=beam_width,
        max_new_tokens=steps,
        min_new_tokens=steps,
        length_penalty=1.0,
        bos_token_id=model.config.bos_token_id,
        pad_token_id=model.config.pad_token_id,
        eos_token_id=None,
    )
    prompt = list(prompt)
    with torch.inference_mode():
        beams = model.generate(torch.tensor([prompt]), generation_config=config)
    return [beam[len(prompt) :].tolist() for beam in beams]


def beam_search(
    model: torch.nn.Module, prompt: Sequence[int], beam_width: int, steps: int
) -> Decoded:
    """Beam search as ``vllm.LLM.beam_search`` runs it without EOS and with length
    penalty 1: every step keeps the ``beam_width`` extensions of highest cumulative
    log-probability; the beams come back best first.

    The margin is the smallest gap, over the steps, between the last extension kept and
    the best one dropped, and between consecutive final beams (their order).
    """
    prompt = list(prompt)
    beams: list[tuple[list[int], float]] = [([], 0.0)]
    margin = float("inf")
    for _ in range(steps):
        candidates = []
        for tokens, score in beams:
            log_probs = next_token_log_probs(model, prompt + tokens)[-1]
            top = log_probs.topk(beam_width + 1)
            for log_prob, token in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                candidates.append((tokens + [token], score + log_prob))
        candidates.sort(key=lambda candidate: candidate[1], reverse=True)
        margin = min(margin, candidates[beam_width - 1][1] - candidates[beam_width][1])
        beams = candidates[:beam_width]
    scores = [score for _, score in beams]
    margin = min([margin, *(a - b for a, b in zip(scores, scores[1:], strict=False))])
    return Decoded(tuple(tuple(tokens) for tokens, _ in beams), margin)
