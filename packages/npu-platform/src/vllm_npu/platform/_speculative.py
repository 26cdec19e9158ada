"""Speculative decoding on our platform: which methods run, and the refusal of the rest.

The ngram method runs (its proposer is vLLM's CPU code; the rejection sampler's
Triton kernels are replaced by ``_spec_decode_kernels``). Methods with a draft
network (EAGLE, MTP, a draft model, ...) need vLLM's Triton input-preparation
kernels, which have no replacement here yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vllm.config import VllmConfig

SUPPORTED_METHODS = ("ngram",)
"""Speculative methods that run through the plugin."""

SUPPORTED_REJECTION_SAMPLE_METHODS = ("standard",)
"""Rejection sampling methods (vLLM 0.32+ ``rejection_sample_method``) that run here."""

_WHAT_TO_DO = "use method 'ngram' or turn speculative decoding off"

SPEC_EAGLE_REFUSAL = (
    "vllm-npu: speculative decoding with EAGLE (method {method!r}) is not supported "
    f"on this platform yet; {_WHAT_TO_DO}."
)
SPEC_MTP_REFUSAL = (
    "vllm-npu: speculative decoding with MTP layers (method {method!r}) is not "
    f"supported on this platform yet; {_WHAT_TO_DO}."
)
SPEC_DRAFT_MODEL_REFUSAL = (
    "vllm-npu: speculative decoding with a draft model (method 'draft_model') is not "
    f"supported on this platform yet; {_WHAT_TO_DO}."
)
SPEC_METHOD_REFUSAL = (
    "vllm-npu: speculative decoding method {method!r} is not supported on this "
    f"platform; {_WHAT_TO_DO}."
)
SPEC_REJECTION_SAMPLE_REFUSAL = (
    "vllm-npu: speculative rejection_sample_method {method!r} is not supported on this "
    "platform; use 'standard'."
)
"""Start-up errors for speculative methods that do not run here; each is formatted
with ``method=`` (the configured method's name)."""


def speculative_refusal(method: str | None, rejection_sample_method: Any = None) -> str | None:
    """The one-line refusal for this speculative configuration, or None if it runs."""
    if method is None:
        return None
    if method not in SUPPORTED_METHODS:
        if "mtp" in method:
            template = SPEC_MTP_REFUSAL
        elif method.startswith("eagle") or method in ("extract_hidden_states", "dflash"):
            template = SPEC_EAGLE_REFUSAL
        elif method == "draft_model":
            template = SPEC_DRAFT_MODEL_REFUSAL
        else:
            template = SPEC_METHOD_REFUSAL
        return template.format(method=method)
    if (
        rejection_sample_method is not None
        and rejection_sample_method not in SUPPORTED_REJECTION_SAMPLE_METHODS
    ):
        return SPEC_REJECTION_SAMPLE_REFUSAL.format(method=rejection_sample_method)
    return None


def check_speculative(vllm_config: VllmConfig) -> None:
    """Refuse, at start-up, a speculative method that would fail on the first step."""
    speculative = getattr(vllm_config, "speculative_config", None)
    if speculative is None:
        return
    refusal = speculative_refusal(
        getattr(speculative, "method", None),
        getattr(speculative, "rejection_sample_method", None),
    )
    if refusal is not None:
        raise ValueError(refusal)


REFUSALS: dict[str, str] = {
    "spec_eagle": SPEC_EAGLE_REFUSAL,
    "spec_mtp": SPEC_MTP_REFUSAL,
    "spec_draft_model": SPEC_DRAFT_MODEL_REFUSAL,
}
"""Support-matrix feature key -> its start-up refusal (a template on ``method``)."""
