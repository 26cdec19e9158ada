"""The sampling references agree with transformers where transformers has the feature,
and their margins are the decisions' real gaps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vllm_npu.testing import (
    DEFAULT_PROMPTS,
    TinyModelSpec,
    build_tiny_model,
    hf_greedy_generate_ids,
    hf_greedy_margins,
    hf_prompt_token_ids,
)
from vllm_npu.testing.sampling_reference import (
    Penalties,
    beam_search,
    load_reference_model,
    next_token_log_probs,
    penalized_greedy,
    transformers_beam_search,
)

PROMPTS = list(DEFAULT_PROMPTS[:3])
STEPS = 4


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("reference") / "llama", TinyModelSpec())


@pytest.fixture(scope="module")
def model(model_path: Path) -> torch.nn.Module:
    return load_reference_model(model_path)


def test_penalized_greedy_without_penalties_is_greedy(model_path: Path, model) -> None:
    prompts = hf_prompt_token_ids(model_path, PROMPTS)
    decoded = [penalized_greedy(model, ids, STEPS, Penalties()) for ids in prompts]
    assert [list(d.token_ids[0]) for d in decoded] == hf_greedy_generate_ids(
        model_path, prompts, STEPS
    )
    margins = hf_greedy_margins(model_path, PROMPTS, STEPS)
    assert [d.margin for d in decoded] == pytest.approx(margins, abs=1e-4)


def test_penalties_change_the_output(model_path: Path, model) -> None:
    prompts = hf_prompt_token_ids(model_path, PROMPTS)
    plain = [penalized_greedy(model, ids, 16, Penalties()).token_ids for ids in prompts]
    penalties = Penalties(repetition_penalty=1.5, presence_penalty=0.7, frequency_penalty=0.4)
    penalized = [penalized_greedy(model, ids, 16, penalties).token_ids for ids in prompts]
    assert plain != penalized


def test_beam_search_matches_transformers(model_path: Path, model) -> None:
    for ids in hf_prompt_token_ids(model_path, PROMPTS):
        decoded = beam_search(model, ids, 2, STEPS)
        assert [list(tokens) for tokens in decoded.token_ids] == transformers_beam_search(
            model, ids, 2, STEPS
        )
        scores = [
            sum(
                float(next_token_log_probs(model, ids + list(tokens))[len(ids) - 1 + i, token])
                for i, token in enumerate(tokens)
            )
            for tokens in decoded.token_ids
        ]
        assert 0 <= decoded.margin <= scores[0] - scores[1] + 1e-5
