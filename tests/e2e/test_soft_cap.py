"""Gemma-2's attention logit soft-cap through the plugin equals transformers, token
for token (host backend, float32), on a tiny random Gemma-2 (alternating sliding-window
and full layers, Gemma-2's final logit cap) whose attention cap is small enough to
change the greedy output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from vllm_npu.testing import DEFAULT_PROMPTS, TinyModelSpec, hf_greedy_generate

from .conftest import greedy_token_ids, vllm_engine

MAX_NEW_TOKENS = 16
ATTENTION_SOFT_CAP = 2.0
"""Far below the tiny model's attention scores: the cap changes every layer's output."""
FINAL_SOFT_CAP = 30.0
"""Gemma-2's own final logit cap."""
WEIGHT_STD = 0.5
"""As vllm_npu.testing.tiny_models: clear greedy decisions in a random model. Norms and
the embeddings (which Gemma scales by sqrt(hidden_size)) get 0.1."""


def _gemma2(folder: Path, llama: Path, attention_cap: float | None) -> Path:
    """A tiny random Gemma-2 (seeded, so equal for every cap) with the tiny llama's
    tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma2Config

    tokenizer = AutoTokenizer.from_pretrained(llama)
    config = Gemma2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        query_pre_attn_scalar=16,
        max_position_embeddings=1024,
        sliding_window=8,
        layer_types=["sliding_attention", "full_attention"],
        attn_logit_softcapping=attention_cap,
        final_logit_softcapping=FINAL_SOFT_CAP,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,  # as vLLM always loads Gemma-2
        dtype="float32",
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            weight.normal_(0.0, 0.1 if "norm" in name or "embed" in name else WEIGHT_STD)
    model.save_pretrained(folder, safe_serialization=True)
    for item in llama.iterdir():
        if item.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(item, folder / item.name)
    return folder


@pytest.mark.support("soft_cap", "host")
def test_gemma2_soft_caps_match_transformers(tiny_model_dir, tmp_path: Path) -> None:
    llama = tiny_model_dir(TinyModelSpec(arch="llama"))
    capped = _gemma2(tmp_path / "capped", llama, ATTENTION_SOFT_CAP)
    uncapped = _gemma2(tmp_path / "uncapped", llama, None)
    expected = hf_greedy_generate(capped, DEFAULT_PROMPTS, MAX_NEW_TOKENS)
    assert expected != hf_greedy_generate(uncapped, DEFAULT_PROMPTS, MAX_NEW_TOKENS), (
        "the caps change nothing: this test could not tell them from no caps"
    )

    with vllm_engine(str(capped)) as llm:
        generated = greedy_token_ids(llm, DEFAULT_PROMPTS, MAX_NEW_TOKENS)

    assert generated == expected
