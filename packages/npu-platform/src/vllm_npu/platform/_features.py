"""Start-up refusals of vLLM features the plugin cannot run yet: one line each that
names the feature and says what to do, raised while vLLM builds the engine
configuration, before any engine or worker process starts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vllm.config import VllmConfig

SLEEP_MODE_REFUSAL = (
    "vllm-npu: sleep mode (enable_sleep_mode) is not supported yet (no allocator of ours "
    "can offload the weights and discard the KV cache); leave enable_sleep_mode off."
)
QUANTIZATION_REFUSAL = (
    "vllm-npu: quantized models (a checkpoint's quantization_config or the quantization "
    "option) are not supported yet; use an unquantized float16, bfloat16 or float32 "
    "checkpoint and leave quantization unset."
)
ENCODER_DECODER_REFUSAL = (
    "vllm-npu: encoder-decoder models (cross-attention, e.g. Whisper) are not supported "
    "by the selected attention backend; use a decoder-only model, or select a backend "
    "that runs them with VLLM_NPU_ATTENTION_BACKEND."
)
ENCODER_ONLY_REFUSAL = (
    "vllm-npu: encoder-only models (bidirectional attention, e.g. BERT) are not supported "
    "by the selected attention backend; use a decoder-only model (runner='pooling' embeds "
    "with those), or select a backend that runs them with VLLM_NPU_ATTENTION_BACKEND."
)
KV_CONNECTOR_REFUSAL = (
    "vllm-npu: KV connectors (kv_transfer_config: disaggregated prefill, KV cache "
    "offloading or sharing) are not supported yet; leave kv_transfer_config unset."
)
FP8_KV_CACHE_REFUSAL = (
    "vllm-npu: an fp8 KV cache (kv_cache_dtype=fp8*) is not supported by the selected "
    "attention backend; leave kv_cache_dtype at 'auto', or select a backend that stores "
    "one with VLLM_NPU_ATTENTION_BACKEND (VLLM_NPU_MLA_ATTENTION_BACKEND for MLA models)."
)
MULTIMODAL_REFUSAL = (
    "vllm-npu: multimodal models (image, video or audio inputs; text-only mode with "
    "language_model_only or limit_mm_per_prompt too) are not supported yet; use a "
    "text-only model."
)
_DEFAULT_BACKEND_REFUSAL = (
    "vllm-npu: attention backend 'npu' cannot run this model ({problem}); select another "
    "with VLLM_NPU_ATTENTION_BACKEND or additional_config {{{{'attention_backend': ...}}}}."
)
SLIDING_WINDOW_REFUSAL = _DEFAULT_BACKEND_REFUSAL.format(problem="sliding window ({window})")
"""What the default attention backend says on a kernel set without sliding-window
attention (the Ascend one), naming the model's window."""
SOFT_CAP_REFUSAL = _DEFAULT_BACKEND_REFUSAL.format(problem="logits soft-cap ({cap})")
"""The same for an attention logit soft-cap, naming the model's cap."""

REFUSALS: dict[str, str] = {
    "sleep_mode": SLEEP_MODE_REFUSAL,
    "quantization": QUANTIZATION_REFUSAL,
    "encoder_decoder": ENCODER_DECODER_REFUSAL,
    "encoder_only": ENCODER_ONLY_REFUSAL,
    "kv_connector": KV_CONNECTOR_REFUSAL,
    "fp8_kv_cache": FP8_KV_CACHE_REFUSAL,
    "multimodal": MULTIMODAL_REFUSAL,
    "sliding_window": SLIDING_WINDOW_REFUSAL,
    "soft_cap": SOFT_CAP_REFUSAL,
}
"""Support-matrix feature key -> its start-up refusal."""

_ATTENTION_TYPES_NEEDED = {
    "encoder_only": (("encoder_only",), ENCODER_ONLY_REFUSAL),
    "encoder_decoder": (("encoder", "decoder", "encoder_decoder"), ENCODER_DECODER_REFUSAL),
}
"""vLLM's ``ModelConfig.attn_type`` -> the layers' attention types, and the refusal
when the attention backend lacks one of them."""


def refuse_unsupported(vllm_config: VllmConfig, attention_cls: Any) -> None:
    """Raise the refusal of the first feature in this configuration that the plugin
    (with this attention backend class) cannot run."""
    kv_transfer = getattr(vllm_config, "kv_transfer_config", None)
    if kv_transfer is not None and getattr(kv_transfer, "kv_connector", None):
        raise ValueError(KV_CONNECTOR_REFUSAL)
    cache_dtype = str(vllm_config.cache_config.cache_dtype)
    if cache_dtype.startswith("fp8") and cache_dtype not in getattr(
        attention_cls, "supported_kv_cache_dtypes", ()
    ):
        raise ValueError(FP8_KV_CACHE_REFUSAL)
    model_config = vllm_config.model_config
    if model_config is None:
        return
    needed = _ATTENTION_TYPES_NEEDED.get(getattr(model_config, "attn_type", "decoder"))
    if needed is not None:
        attention_types, refusal = needed
        if not all(attention_cls.supports_attn_type(kind) for kind in attention_types):
            raise ValueError(refusal)
    # After the attention types: Whisper is multimodal too, and its encoder-decoder
    # refusal says more. Set whenever vLLM's registry calls the architecture
    # multimodal, whatever the modality limits.
    if getattr(model_config, "is_multimodal_model", False):
        raise ValueError(MULTIMODAL_REFUSAL)
