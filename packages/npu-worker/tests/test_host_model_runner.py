"""The host runner's own step work: which steps skip vLLM's batch reordering."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from vllm.v1.worker.cpu_model_runner import CPUModelRunner

from vllm_npu.worker.host_model_runner import HostModelRunner


def runner_with(computed: list[int], prompts: list[int]) -> HostModelRunner:
    runner = object.__new__(HostModelRunner)
    runner.reorder_batch_threshold = 1
    runner.input_batch = SimpleNamespace(
        req_ids=[f"r{i}" for i in range(len(computed))],
        num_computed_tokens_cpu=np.array(computed + [0, 0], dtype=np.int32),
        num_prompt_tokens=np.array(prompts + [0, 0], dtype=np.int32),
    )
    return runner


@pytest.mark.parametrize(
    ("scheduled", "computed", "prompts", "reordered"),
    [
        ([1, 1, 1], [9, 5, 7], [4, 5, 2], False),  # decodes only: already in order
        ([1, 3, 1], [9, 5, 7], [4, 5, 2], True),  # a chunk of 3 tokens
        ([1, 1, 1], [9, 3, 7], [4, 5, 2], True),  # a prompt's last token: a short extend
        ([1, 4, 1], [9, 0, 7], [4, 4, 2], True),  # a new prompt
    ],
)
def test_only_steps_of_decodes_skip_the_reordering(
    scheduled: list[int],
    computed: list[int],
    prompts: list[int],
    reordered: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(
        CPUModelRunner, "_may_reorder_batch", lambda self, output: calls.append(output)
    )
    runner = runner_with(computed, prompts)
    output = SimpleNamespace(
        num_scheduled_tokens={f"r{i}": n for i, n in enumerate(scheduled)}
    )
    runner._may_reorder_batch(output)
    assert calls == ([output] if reordered else [])


def test_a_backend_without_reordering_is_left_to_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(
        CPUModelRunner, "_may_reorder_batch", lambda self, output: calls.append(output)
    )
    runner = runner_with([9], [4])
    runner.reorder_batch_threshold = None
    output = SimpleNamespace(num_scheduled_tokens={"r0": 1})
    runner._may_reorder_batch(output)
    assert calls == [output]
