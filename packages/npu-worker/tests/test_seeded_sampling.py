"""Seeded sampling across a chunked prefill (``CPUGeneratorRewind``): a step whose
sampled token vLLM drops leaves the request's CPU generator where it was, so the
request samples the same tokens as with its prompt prefilled in one step."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from vllm.v1.sample.ops.topk_topp_sampler import random_sample
from vllm.v1.worker.gpu_model_runner import GPUModelRunner

from vllm_npu.worker._seeded_sampling import CPUGeneratorRewind

VOCAB = 64
SEED = 7


class VllmSampling:
    """The two steps of vLLM's runner that touch per-request generators: ``_sample``
    draws with vLLM's own ``random_sample``, ``_bookkeeping_sync`` is vLLM's rewind
    of the discarded requests' generators (test_vllm_still_rewinds_by_offset holds
    this to vLLM's source)."""

    def __init__(self, num_reqs: int) -> None:
        generators = {
            index: torch.Generator().manual_seed(SEED + index) for index in range(num_reqs)
        }
        self.input_batch = SimpleNamespace(num_reqs=num_reqs, generators=generators)
        self.discard_request_mask = SimpleNamespace(np=np.zeros(num_reqs, dtype=bool))
        self.logits = torch.randn(num_reqs, VOCAB, generator=torch.Generator().manual_seed(0))

    def _sample(self, logits: Any, spec_decode_metadata: Any) -> torch.Tensor:
        return random_sample(self.logits.softmax(dim=-1), self.input_batch.generators)

    def _bookkeeping_sync(self, sampled: torch.Tensor) -> list[int | None]:
        num_reqs = self.input_batch.num_reqs
        for i in np.nonzero(self.discard_request_mask.np[:num_reqs])[0]:
            gen = self.input_batch.generators.get(int(i))
            if gen is not None:
                gen.set_offset(gen.get_offset() - 4)
        return [
            None if self.discard_request_mask.np[index] else int(token)
            for index, token in enumerate(sampled)
        ]

    def step(self, discarded: list[bool]) -> list[int | None]:
        """One step: sample every request, keep the tokens of those not discarded."""
        self.discard_request_mask.np[:] = discarded
        return self._bookkeeping_sync(self._sample(None, None))


class RewindingRunner(CPUGeneratorRewind, VllmSampling):
    """The plugin's runners put the mixin in front of vLLM's runner the same way."""


def test_vllms_rewind_kills_a_step_with_a_cpu_generator() -> None:
    with pytest.raises(RuntimeError, match="CPU Generator does not use offset"):
        VllmSampling(num_reqs=1).step([True])


def test_discarded_samples_leave_the_tokens_of_an_unchunked_prefill() -> None:
    unchunked = RewindingRunner(num_reqs=2)
    chunked = RewindingRunner(num_reqs=2)
    generators = chunked.input_batch.generators
    expected = [unchunked.step([False, False]) for _ in range(4)]
    # Request 0's prompt takes three chunks: the first two steps' tokens are dropped;
    # request 1 decodes beside them.
    chunked_steps = [chunked.step([True, False]), chunked.step([True, False])]
    chunked_steps += [chunked.step([False, False]) for _ in range(2)]
    assert chunked_steps[0][0] is None and chunked_steps[1][0] is None
    assert [step[0] for step in chunked_steps[2:]] == [step[0] for step in expected[:2]]
    assert [step[1] for step in chunked_steps] == [step[1] for step in expected]
    assert chunked.input_batch.generators is generators


def test_different_seeds_sample_differently() -> None:
    """The comparison above could not tell a generator that is never used from one
    that is: here the same steps with other seeds sample other tokens."""
    runner, other = RewindingRunner(num_reqs=2), RewindingRunner(num_reqs=2)
    for index, generator in other.input_batch.generators.items():
        generator.manual_seed(SEED + 100 + index)
    tokens = [runner.step([False, False]) for _ in range(4)]
    assert tokens != [other.step([False, False]) for _ in range(4)]


def test_vllm_still_rewinds_by_offset() -> None:
    """The mixin answers these lines of vLLM's runner; when they change, revisit it."""
    bookkeeping = inspect.getsource(GPUModelRunner._bookkeeping_sync)
    assert "self.discard_request_mask.np[:num_reqs]" in bookkeeping
    assert "gen = self.input_batch.generators.get(int(i))" in bookkeeping
    assert "gen.set_offset(gen.get_offset() - 4)" in bookkeeping
    sample = inspect.getsource(GPUModelRunner._sample)
    assert "sampling_metadata = self.input_batch.sampling_metadata" in sample
