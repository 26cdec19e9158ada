"""LoRA adapters for tiny checkpoints, built offline in PEFT's format, and the
checkpoint with an adapter merged into its weights (the reference to compare with).

An adapter adds ``scale * B @ A`` to each targeted linear weight ``W`` (``scale =
lora_alpha / r``); the merged checkpoint holds ``W + scale * B @ A`` in float32.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

LORA_TARGET_MODULES = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
"""The linear layers of a llama-style decoder an adapter changes (vLLM packs q/k/v
and gate/up: every packed slice is exercised)."""

_WEIGHTS = "model.safetensors"
_ADAPTER_CONFIG = "adapter_config.json"
_ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model."


def _targeted_weights(weights: dict[str, torch.Tensor]) -> list[str]:
    """Names (without ``.weight``) of the base checkpoint's targeted linear layers."""
    return sorted(
        name.removesuffix(".weight")
        for name in weights
        if name.endswith(".weight") and name.split(".")[-2] in LORA_TARGET_MODULES
    )


def build_lora_adapter(
    model_path: str | os.PathLike[str],
    adapter_path: str | os.PathLike[str],
    seed: int,
    rank: int = 8,
    lora_alpha: int = 16,
    strength: float = 0.5,
) -> Path:
    """Write a random adapter for the checkpoint at ``model_path`` into ``adapter_path``.

    Each delta ``scale * B @ A`` has ``strength`` times the root-mean-square of the
    weight it changes, so greedy outputs differ from the base model's and between
    adapters of different seeds.
    """
    model_path, adapter_path = Path(model_path), Path(adapter_path)
    weights = load_file(str(model_path / _WEIGHTS))
    generator = torch.Generator().manual_seed(seed)
    scale = lora_alpha / rank
    tensors: dict[str, torch.Tensor] = {}
    for name in _targeted_weights(weights):
        weight = weights[f"{name}.weight"].float()
        out_features, in_features = weight.shape
        lora_a = torch.randn(rank, in_features, generator=generator) / in_features**0.5
        lora_b = torch.randn(out_features, rank, generator=generator)
        delta_rms = (scale * lora_b @ lora_a).pow(2).mean().sqrt()
        lora_b *= strength * weight.pow(2).mean().sqrt() / delta_rms
        tensors[f"{_PEFT_PREFIX}{name}.lora_A.weight"] = lora_a.contiguous()
        tensors[f"{_PEFT_PREFIX}{name}.lora_B.weight"] = lora_b.contiguous()
    adapter_path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(adapter_path / _ADAPTER_WEIGHTS))
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(model_path),
        "r": rank,
        "lora_alpha": lora_alpha,
        "lora_dropout": 0.0,
        "target_modules": list(LORA_TARGET_MODULES),
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": None,
        "inference_mode": True,
    }
    (adapter_path / _ADAPTER_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return adapter_path


def merge_lora_adapter(
    model_path: str | os.PathLike[str],
    adapter_path: str | os.PathLike[str],
    merged_path: str | os.PathLike[str],
) -> Path:
    """Write the checkpoint at ``model_path`` with the adapter merged into its weights
    (``W + lora_alpha / r * B @ A``) into ``merged_path``; tokenizer and config are
    copied unchanged."""
    model_path, adapter_path = Path(model_path), Path(adapter_path)
    merged_path = Path(merged_path)
    config = json.loads((adapter_path / _ADAPTER_CONFIG).read_text(encoding="utf-8"))
    scale = config["lora_alpha"] / config["r"]
    adapter = load_file(str(adapter_path / _ADAPTER_WEIGHTS))
    weights = load_file(str(model_path / _WEIGHTS))
    merged_path.mkdir(parents=True, exist_ok=True)
    for item in model_path.iterdir():
        if item.is_file() and item.name != _WEIGHTS:
            shutil.copy(item, merged_path / item.name)
    for name in _targeted_weights(weights):
        lora_a = adapter[f"{_PEFT_PREFIX}{name}.lora_A.weight"]
        lora_b = adapter[f"{_PEFT_PREFIX}{name}.lora_B.weight"]
        weight = weights[f"{name}.weight"]
        weights[f"{name}.weight"] = (weight.float() + scale * lora_b @ lora_a).to(weight.dtype)
    save_file(weights, str(merged_path / _WEIGHTS), metadata={"format": "pt"})
    return merged_path
