"""Declared, version-gated, drift-checked patches to vLLM, and the framework applying them."""

from vllm_npu.patches.declaration import Patch, PatchStatus, Process, fingerprint_of
from vllm_npu.patches.declared import DECLARED_PATCHES
from vllm_npu.patches.manager import DISABLE_ENV, Outcome, PatchError, PatchManager
from vllm_npu.patches.registry import manager

__all__ = [
    "DECLARED_PATCHES",
    "DISABLE_ENV",
    "Outcome",
    "Patch",
    "PatchError",
    "PatchManager",
    "PatchStatus",
    "Process",
    "fingerprint_of",
    "manager",
]
