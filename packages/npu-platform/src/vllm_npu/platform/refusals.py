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
    QUANTIZATION_REFUSAL,
    REFUSALS,
    SLEEP_MODE_REFUSAL,
)

START_UP_REFUSALS: Mapping[str, str] = MappingProxyType(dict(REFUSALS))
"""Feature key -> its one-line refusal (a template where it names the configured
value, e.g. ``{method!r}``)."""

__all__ = [
    "ENCODER_DECODER_REFUSAL",
    "ENCODER_ONLY_REFUSAL",
    "FP8_KV_CACHE_REFUSAL",
    "KV_CONNECTOR_REFUSAL",
    "QUANTIZATION_REFUSAL",
    "SLEEP_MODE_REFUSAL",
    "START_UP_REFUSALS",
]
