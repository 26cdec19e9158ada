"""The platform's start-up refusals by support-matrix feature key: what a user reads
when a vLLM feature cannot run through the plugin (docs/support_matrix.md and the
tests that check each refusal read them from here)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from vllm_npu.platform._features import (
    ENCODER_DECODER_REFUSAL,
    ENCODER_ONLY_REFUSAL,
    FP8_KV_CACHE_REFUSAL,
    KV_CONNECTOR_REFUSAL,
    MULTIMODAL_REFUSAL,
    QUANTIZATION_REFUSAL,
    REFUSALS,
    SLEEP_MODE_REFUSAL,
    SLIDING_WINDOW_REFUSAL,
    SOFT_CAP_REFUSAL,
)
from vllm_npu.platform._lora import LORA_REFUSAL
from vllm_npu.platform._speculative import (
    SPEC_DRAFT_MODEL_REFUSAL,
    SPEC_EAGLE_REFUSAL,
    SPEC_MTP_REFUSAL,
)

START_UP_REFUSALS: Mapping[str, str] = MappingProxyType(
    {
        **REFUSALS,
        "lora": LORA_REFUSAL,
        "spec_draft_model": SPEC_DRAFT_MODEL_REFUSAL,
        "spec_eagle": SPEC_EAGLE_REFUSAL,
        "spec_mtp": SPEC_MTP_REFUSAL,
    }
)
"""Feature key -> its one-line refusal (a template where it names the configured
value, e.g. ``{method!r}``)."""

__all__ = [
    "ENCODER_DECODER_REFUSAL",
    "ENCODER_ONLY_REFUSAL",
    "FP8_KV_CACHE_REFUSAL",
    "KV_CONNECTOR_REFUSAL",
    "LORA_REFUSAL",
    "MULTIMODAL_REFUSAL",
    "QUANTIZATION_REFUSAL",
    "SLEEP_MODE_REFUSAL",
    "SLIDING_WINDOW_REFUSAL",
    "SOFT_CAP_REFUSAL",
    "SPEC_DRAFT_MODEL_REFUSAL",
    "SPEC_EAGLE_REFUSAL",
    "SPEC_MTP_REFUSAL",
    "START_UP_REFUSALS",
]
