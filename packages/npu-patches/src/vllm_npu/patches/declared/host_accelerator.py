"""torch.accelerator calls that vLLM makes on every non-CPU platform, on a CPU-only torch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from vllm_npu.patches.declaration import Patch
from vllm_npu.platform.version_gate import supported_vllm_specifier


def _no_accelerator() -> bool:
    # A CUDA build of torch on a machine without a GPU names "cuda" as its
    # accelerator but has none available.
    return not torch.accelerator.is_available()


def _harmless(name: str) -> Callable[[Any], Any]:
    def build(original: Any) -> Any:
        def without_accelerator(*args: Any, **kwargs: Any) -> None:
            """No accelerator: there is nothing to synchronize or free."""

        without_accelerator.__name__ = name
        without_accelerator.__wrapped__ = original  # type: ignore[attr-defined]
        return without_accelerator

    return build


_COMMON = dict(
    processes=("platform", "worker", "engine_core"),
    # Every supported release: the fingerprint refuses a target that drifted.
    vllm_versions=supported_vllm_specifier(),
    why=(
        "vLLM calls torch.accelerator.{name}() on every platform that is not its own "
        "CPU platform (e.g. cleanup_dist_env_and_memory at shutdown); on the host "
        "backend torch has no usable accelerator and the call raises ('Cannot access "
        "accelerator device when none is available' with CPU torch, 'Found no NVIDIA "
        "driver' with a CUDA build), killing the engine at exit."
    ),
    how="Replace torch.accelerator.{name} with a function that does nothing.",
    upstream=(
        "none yet: the fix belongs in vLLM (ask the platform instead of torch, e.g. "
        "current_platform.empty_cache()); to be proposed upstream"
    ),
    removal=(
        "Drop when vLLM routes these calls through the platform, or checks "
        "torch.accelerator.is_available() first."
    ),
    condition=_no_accelerator,
    condition_text="when torch has no usable accelerator (the host backend)",
)


def _patch(name: str, target: str, fingerprint: str) -> Patch:
    fields: dict[str, Any] = {
        key: value.format(name=name) if isinstance(value, str) else value
        for key, value in _COMMON.items()
    }
    return Patch(
        id=f"host-accelerator-{name.replace('_', '-')}",
        target=target,
        fingerprint=fingerprint,
        replacement=_harmless(name),
        **fields,
    )


HOST_ACCELERATOR_PATCHES = (
    _patch("empty_cache", "torch.accelerator:empty_cache", "7cc3595b8f83d645"),
    _patch("empty_host_cache", "torch.accelerator:empty_host_cache", "54136e6f9d3f1346"),
    _patch("synchronize", "torch.accelerator:synchronize", "a6d6157d207367dd"),
)
