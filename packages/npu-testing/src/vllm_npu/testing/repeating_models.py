"""Tiny checkpoints whose greedy continuations repeat, for speculative decoding tests.

A random tiny model never repeats itself, so an ngram proposer finds drafts the
model rejects. ``build_repeating_model`` rewrites a tiny llama so that its greedy
output mostly walks short cycles of token ids (drafts get accepted), while the
attention and MLP layers, scaled down but not removed, still break some cycles
(drafts get rejected too), so both outcomes of verification are exercised.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

_WEIGHTS = "model.safetensors"


def build_repeating_model(
    model_path: str | os.PathLike[str],
    repeating_path: str | os.PathLike[str],
    cycle_length: int = 6,
    layer_scale: float = 0.01,
    logit_scale: float = 10.0,
) -> Path:
    """Write a variant of the tiny llama at ``model_path`` into ``repeating_path``.

    The output head maps each token's embedding to the next id of its cycle
    (ids ``k * cycle_length ... k * cycle_length + cycle_length - 1`` form one), and
    every layer's output projections (``o_proj``, ``down_proj``) are multiplied by
    ``layer_scale``. Config and tokenizer are copied unchanged.
    """
    model_path, repeating_path = Path(model_path), Path(repeating_path)
    weights = load_file(str(model_path / _WEIGHTS))
    embeddings = weights["model.embed_tokens.weight"].float()
    vocab_size = embeddings.shape[0]
    token_ids = torch.arange(vocab_size)
    next_ids = (token_ids // cycle_length) * cycle_length + (token_ids + 1) % cycle_length
    complete = next_ids < vocab_size
    head = torch.zeros_like(embeddings)
    directions = embeddings / embeddings.norm(dim=1, keepdim=True)
    head[next_ids[complete]] = logit_scale * directions[complete]
    weights["lm_head.weight"] = head.to(weights["lm_head.weight"].dtype).contiguous()
    for name, tensor in weights.items():
        if name.endswith(("self_attn.o_proj.weight", "mlp.down_proj.weight")):
            weights[name] = (tensor * layer_scale).contiguous()
    repeating_path.mkdir(parents=True, exist_ok=True)
    for item in model_path.iterdir():
        if item.is_file() and item.name != _WEIGHTS:
            shutil.copy(item, repeating_path / item.name)
    save_file(weights, str(repeating_path / _WEIGHTS), metadata={"format": "pt"})
    return repeating_path
