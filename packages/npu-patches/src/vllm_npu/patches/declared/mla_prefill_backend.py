"""vLLM 0.28-0.31 choosing an MLA layer's prefill backend without asking the platform."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vllm_npu.patches.declaration import Patch
from vllm_npu.platform.version_gate import supported_vllm_specifier


def _platform_has_no_prefill_hook() -> bool:
    from vllm.platforms.interface import Platform

    return not hasattr(Platform, "get_mla_prefill_backend_cls")


def _ask_the_platform(original: Any) -> Callable[[Any], type]:
    def get_mla_prefill_backend(vllm_config: Any) -> type:
        """The MLA prefill backend our platform names (vLLM 0.32's hook, asked early)."""
        from vllm.platforms import current_platform

        return current_platform.get_mla_prefill_backend_cls(None)

    get_mla_prefill_backend.__wrapped__ = original  # type: ignore[attr-defined]
    return get_mla_prefill_backend


MLA_PREFILL_BACKEND_PATCHES = (
    Patch(
        id="mla-prefill-backend",
        processes=("worker",),
        target="vllm.model_executor.layers.attention.mla_attention:get_mla_prefill_backend",
        # vLLM 0.32 added Platform.get_mla_prefill_backend_cls, which the selector asks.
        vllm_versions=f"{supported_vllm_specifier()},<0.32",
        why=(
            "Every MLA layer builds a prefill backend (MLAAttention.__init__ calls "
            "get_mla_prefill_backend), and before vLLM 0.32 the selector asks no platform: "
            "without a device capability it returns FlashAttention's, whose module does not "
            "import off CUDA (compile_flash_attn_varlen_func_from_specs), so every MLA "
            "model (DeepSeek, Kimi, GLM) dies while its layers are built."
        ),
        how=(
            "Replace the selector MLAAttention calls with one that returns "
            "NPUPlatform.get_mla_prefill_backend_cls(...): the prefill backend the selected "
            "MLA attention backend names, as vLLM 0.32+ asks the platform itself."
        ),
        upstream="fixed upstream in vLLM 0.32 (Platform.get_mla_prefill_backend_cls)",
        removal="Drop when vLLM 0.31 leaves the supported releases (compat.toml).",
        fingerprint="4f82e96b3217bed3",  # vLLM 0.31
        known_fingerprints=(
            "e069c3b966d60764",  # 0.29, 0.30
            "b68edf81e9aae63a",  # 0.28
        ),
        replacement=_ask_the_platform,
        condition=_platform_has_no_prefill_hook,
        condition_text="when vLLM's Platform has no get_mla_prefill_backend_cls (before 0.32)",
        required=True,
    ),
)
