"""Test support for vllm-npu: tiny offline checkpoints and Hugging Face references."""

from vllm_npu.testing.hf_reference import (
    hf_greedy_generate,
    hf_greedy_generate_ids,
    hf_greedy_margins,
    hf_greedy_routing_margins,
    hf_prompt_token_ids,
)
from vllm_npu.testing.tiny_models import (
    ARCHITECTURES,
    DEFAULT_PROMPTS,
    MLA_ARCHITECTURES,
    MOE_ARCHITECTURES,
    TinyModelSpec,
    build_tiny_model,
    build_tiny_models,
)

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_PROMPTS",
    "MLA_ARCHITECTURES",
    "MOE_ARCHITECTURES",
    "TinyModelSpec",
    "build_tiny_model",
    "build_tiny_models",
    "hf_greedy_generate",
    "hf_greedy_generate_ids",
    "hf_greedy_margins",
    "hf_greedy_routing_margins",
    "hf_prompt_token_ids",
]
