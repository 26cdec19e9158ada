"""The process-wide manager of the declared patches."""

from __future__ import annotations

from functools import cache

from vllm_npu.patches.declared import DECLARED_PATCHES
from vllm_npu.patches.manager import PatchManager


@cache
def manager() -> PatchManager:
    """The manager of every declared patch, one per process."""
    return PatchManager(DECLARED_PATCHES)
