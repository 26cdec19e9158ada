"""vLLM's PyTorch LoRA ops (used by PunicaWrapperCPU, the host backend's LoRA) giving
tokens without an adapter the last slot's adapter."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from vllm_npu.patches import _lora_ops
from vllm_npu.patches.declaration import Patch
from vllm_npu.platform.version_gate import supported_vllm_specifier

_OPS_MODULE = "vllm.lora.ops.torch_ops.lora_ops"

# Where the ops are looked up: lora_ops itself (its sgmv_* call its bgmv_* by global
# name), the torch_ops package that re-exports them, and punica_cpu, which imports
# them from that package by name.
_NAMESPACES = (_OPS_MODULE, "vllm.lora.ops.torch_ops", "vllm.lora.punica_wrapper.punica_cpu")

# Each op's fingerprint on vLLM 0.28-0.32 (the same source in all five releases).
_FINGERPRINTS = {
    "bgmv_shrink": "e7a5eafed74a2bc1",
    "bgmv_expand": "634dfed323317a2a",
    "bgmv_expand_slice": "3534905281a25201",
}


@cache
def _vllm_ops_misread_no_adapter() -> bool:
    """vLLM's bgmv_expand adds an adapter to a token whose lora index is -1 (called once)."""
    import importlib

    ops = importlib.import_module(_OPS_MODULE)
    expand = getattr(ops, "bgmv_expand", None)
    original = getattr(expand, "__wrapped__", expand)
    return original is not None and _lora_ops.ops_give_unadapted_tokens_an_adapter(original)


def _ours(name: str) -> Callable[[Any], Any]:
    def build(original: Any) -> Any:
        fixed = getattr(_lora_ops, name)

        def op(*args: Any, **kwargs: Any) -> None:
            fixed(*args, **kwargs)

        op.__name__ = op.__qualname__ = name
        op.__doc__ = fixed.__doc__
        op.__wrapped__ = original  # type: ignore[attr-defined]
        return op

    return build


def _patch(namespace: str, name: str) -> Patch:
    return Patch(
        id=f"host-lora-{namespace.rpartition('.')[2].replace('_', '-')}-{name.replace('_', '-')}",
        processes=("worker",),
        target=f"{namespace}:{name}",
        # The releases whose ops have the bug; 0.33 fixed them (vLLM's own change).
        vllm_versions=f"{supported_vllm_specifier()},<0.33",
        why=(
            f"vLLM's PyTorch {name} indexes the adapter stack with each token's lora "
            "index, and a token without an adapter has index -1: it gets the last "
            "slot's adapter, so a request without an adapter batched with adapted "
            "ones on the host backend (PunicaWrapperCPU) gives wrong tokens."
        ),
        how=(
            f"Replace {namespace}.{name} with vllm_npu's own PyTorch {name} "
            "(vllm_npu.patches._lora_ops), which gives tokens with index -1 no "
            "adapter's product and leaves their output rows as they are (vLLM 0.33's "
            "semantics)."
        ),
        upstream="fixed upstream in vLLM 0.33 (clamped index, -1 rows masked)",
        removal="Drop when vLLM 0.32 leaves the supported releases (compat.toml).",
        fingerprint=_FINGERPRINTS[name],
        replacement=_ours(name),
        condition=_vllm_ops_misread_no_adapter,
        condition_text=(
            "when vLLM's bgmv_expand, called once, adds an adapter to a token with "
            "lora index -1"
        ),
        required=True,
    )


HOST_LORA_OPS_PATCHES = tuple(
    _patch(namespace, name) for namespace in _NAMESPACES for name in _FINGERPRINTS
)
