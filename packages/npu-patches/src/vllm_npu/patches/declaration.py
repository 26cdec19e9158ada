"""What a patch is: a declared change to one object of vLLM (or torch) that we do not own."""

from __future__ import annotations

import enum
import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Process = Literal["platform", "worker", "engine_core"]


class PatchStatus(str, enum.Enum):
    APPLIED = "applied"
    PENDING = "pending"
    """Waiting for its target module to be imported."""
    SKIPPED_OUT_OF_RANGE = "skipped-out-of-range"
    NOT_NEEDED = "not-needed"
    """The declared condition does not hold here (e.g. another device backend)."""
    DRIFTED = "drifted"
    DISABLED = "disabled"
    FAILED = "failed"
    NOT_APPLIED = "not-applied"
    """Not for this process, or not tried yet."""


@dataclass(frozen=True)
class Patch:
    """One change to a target we do not own, with everything needed to remove it."""

    id: str
    processes: tuple[Process, ...]
    target: str
    """``module:qualname`` of the replaced object, e.g. ``torch.accelerator:empty_cache``."""
    vllm_versions: str
    """PEP 440 specifier of the vLLM releases the patch applies to."""
    why: str
    how: str
    upstream: str
    """Upstream PR, or why there is none."""
    removal: str
    fingerprint: str
    """``fingerprint_of(target)`` when the patch was written."""
    replacement: Callable[[Any], Any] = field(repr=False, compare=False)
    """Builds the new object from the original one."""
    condition: Callable[[], bool] | None = field(default=None, repr=False, compare=False)
    """When given and false, the patch is not needed in this environment."""
    condition_text: str = "always"
    required: bool = False
    """A patch needed for correctness: failing to apply it stops start-up."""
    known_fingerprints: tuple[str, ...] = ()
    """Other fingerprints of the target that are known to be harmless drift."""

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    @property
    def qualname(self) -> str:
        return self.target.partition(":")[2]


def fingerprint_of(obj: Any) -> str:
    """A short hash of ``obj``'s source (its repr when it has none)."""
    try:
        text = inspect.getsource(obj)
    except (OSError, TypeError):
        text = repr(obj)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
