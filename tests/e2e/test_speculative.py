"""Speculative decoding with the ngram proposer on the host backend: greedy output
equal token for token to transformers, with drafts both accepted and rejected."""

from __future__ import annotations

import pytest

from vllm_npu.testing import DEFAULT_PROMPTS, TinyModelSpec, hf_greedy_generate
from vllm_npu.testing.repeating_models import build_repeating_model

from .conftest import greedy_token_ids, vllm_engine

MAX_NEW_TOKENS = 32
NGRAM = {
    "method": "ngram",
    "num_speculative_tokens": 3,
    "prompt_lookup_min": 1,
    "prompt_lookup_max": 3,
}


def _counter(llm, name: str) -> float:
    return sum(
        getattr(metric, "value", 0) or 0 for metric in llm.get_metrics() if metric.name == name
    )


@pytest.mark.support("spec_ngram", "host")
def test_ngram_speculation_keeps_greedy_output(tiny_model_dir, tmp_path) -> None:
    # A random tiny model never repeats itself; this variant mostly does, so the
    # proposer's drafts are verified both ways.
    model = build_repeating_model(
        tiny_model_dir(TinyModelSpec(arch="llama")), tmp_path / "repeating-llama"
    )
    prompts = list(DEFAULT_PROMPTS[:4])
    expected = hf_greedy_generate(model, prompts, MAX_NEW_TOKENS)

    with vllm_engine(str(model), speculative_config=NGRAM, disable_log_stats=False) as llm:
        generated = greedy_token_ids(llm, prompts, MAX_NEW_TOKENS)
        drafted = _counter(llm, "vllm:spec_decode_num_draft_tokens")
        accepted = _counter(llm, "vllm:spec_decode_num_accepted_tokens")

    assert generated == expected
    assert 0 < accepted < drafted, f"{accepted} of {drafted} draft tokens accepted"
