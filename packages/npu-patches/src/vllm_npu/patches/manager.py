"""Applying, reporting and reverting declared patches, one by one."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from packaging.specifiers import SpecifierSet

from vllm_npu.patches import _lazy, _target
from vllm_npu.patches.declaration import Patch, PatchStatus, Process, fingerprint_of
from vllm_npu.platform.versions import VERSION_OVERRIDE_ENV, vllm_version

# vLLM's logger hierarchy without importing vLLM (``vllm-npu patches`` and the doctor
# run without it): vLLM's handler prints these lines in every vLLM process.
logger = logging.getLogger("vllm.vllm_npu.patches")

DISABLE_ENV = "VLLM_NPU_DISABLE_PATCHES"
PATCH_MARKER = "__vllm_npu_patch__"


class PatchError(RuntimeError):
    """A required patch could not be applied: start-up must stop."""

    fatal = True


@dataclass(frozen=True)
class Outcome:
    status: PatchStatus
    detail: str = ""


def disabled_ids() -> frozenset[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return frozenset(item.strip() for item in raw.split(",") if item.strip())


class PatchManager:
    """Owns a set of declared patches and the originals of those applied."""

    def __init__(self, patches: Sequence[Patch]) -> None:
        ids = [patch.id for patch in patches]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate patch ids in {ids}")
        self.patches: dict[str, Patch] = {patch.id: patch for patch in patches}
        self._originals: dict[str, tuple[Any, str, Any]] = {}
        self._outcomes: dict[str, Outcome] = {}

    def outcome(self, patch_id: str) -> Outcome:
        return self._outcomes.get(patch_id, Outcome(PatchStatus.NOT_APPLIED))

    def outcomes(self) -> dict[str, Outcome]:
        return {patch_id: self.outcome(patch_id) for patch_id in self.patches}

    def apply(self, process: Process) -> dict[str, Outcome]:
        """Apply every patch declared for ``process``; returns their outcomes."""
        for patch in self.patches.values():
            if process in patch.processes:
                self.apply_one(patch)
        return {
            patch.id: self.outcome(patch.id)
            for patch in self.patches.values()
            if process in patch.processes
        }

    def apply_one(self, patch: Patch, *, lazy: bool = True) -> Outcome:
        """Apply ``patch`` now, or (``lazy``) once its module is imported; idempotent."""
        current = self.outcome(patch.id)
        if current.status in (PatchStatus.APPLIED, PatchStatus.PENDING):
            return current
        refused = self._precheck(patch)
        if refused is not None:
            return refused
        if not lazy or _target.module_imported(patch.module):
            return self._install(patch)
        _lazy.when_imported(patch.module, patch.id, lambda _module: self._install(patch))
        return self._record(patch, Outcome(PatchStatus.PENDING, f"waits for {patch.module}"))

    def dry_run(self, *, ignore_conditions: bool = False) -> dict[str, Outcome]:
        """What every patch does in this environment, whatever its process: each is
        applied (importing its target) and everything is reverted afterwards.

        ``ignore_conditions`` checks patches whose condition does not hold here
        too, so a maintainer sees drift on every in-range target.
        """
        for patch in self.patches.values():
            if ignore_conditions:
                patch = replace(patch, condition=None)
            with contextlib.suppress(PatchError):  # recorded as drifted or failed
                self.apply_one(patch, lazy=False)
        outcomes = self.outcomes()
        self.revert()
        return outcomes

    def _precheck(self, patch: Patch) -> Outcome | None:
        disabled = disabled_ids()
        if "*" in disabled or patch.id in disabled:
            return self._record(patch, Outcome(PatchStatus.DISABLED, f"by {DISABLE_ENV}"))
        version = vllm_version()
        if version.release is None:
            return self._record(
                patch,
                Outcome(
                    PatchStatus.SKIPPED_OUT_OF_RANGE,
                    f"cannot tell which release vLLM {version.installed} is; "
                    f"set {VERSION_OVERRIDE_ENV}",
                ),
            )
        if version.release not in SpecifierSet(patch.vllm_versions):
            return self._record(
                patch,
                Outcome(
                    PatchStatus.SKIPPED_OUT_OF_RANGE,
                    f"vLLM {version.release} not in {patch.vllm_versions}",
                ),
            )
        if patch.condition is not None and not patch.condition():
            return self._record(
                patch, Outcome(PatchStatus.NOT_NEEDED, f"needed only {patch.condition_text}")
            )
        return None

    def _install(self, patch: Patch) -> Outcome:
        if patch.id in self._originals:
            return self.outcome(patch.id)
        try:
            owner, attribute, original = _target.resolve(patch.module, patch.qualname)
        except _target.TargetMissing as error:
            return self._refuse(patch, str(error))
        original = self._unpatched(original)
        found = fingerprint_of(original)
        if found != patch.fingerprint and found not in patch.known_fingerprints:
            return self._refuse(
                patch,
                f"{patch.target} changed (fingerprint {found}, written against "
                f"{patch.fingerprint})",
            )
        try:
            replacement = patch.replacement(original)
            setattr(replacement, PATCH_MARKER, patch.id)
            setattr(owner, attribute, replacement)
        except Exception as error:
            outcome = Outcome(PatchStatus.FAILED, f"{type(error).__name__}: {error}")
            self._record(patch, outcome)
            if patch.required:
                raise PatchError(
                    f"vllm-npu: required patch {patch.id} failed: {outcome.detail}"
                ) from error
            logger.error("vllm-npu: patch %s failed and was skipped: %s", patch.id, outcome.detail)
            return outcome
        self._originals[patch.id] = (owner, attribute, original)
        logger.debug("vllm-npu: patch %s applied to %s", patch.id, patch.target)
        return self._record(patch, Outcome(PatchStatus.APPLIED))

    def _unpatched(self, found: Any) -> Any:
        """What ``found`` replaced when it is another patch's replacement that an import
        copied to this target (``from module import name`` after that patch applied)."""
        patch_id = getattr(found, PATCH_MARKER, None)
        if patch_id in self._originals:
            return self._originals[patch_id][2]
        return found

    def _refuse(self, patch: Patch, what_changed: str) -> Outcome:
        outcome = self._record(patch, Outcome(PatchStatus.DRIFTED, what_changed))
        message = (
            f"vllm-npu: patch {patch.id} not applied: {what_changed}; check that the "
            f"patch still fits the new code, then update its fingerprint "
            f"(or disable it with {DISABLE_ENV}={patch.id})."
        )
        if patch.required:
            raise PatchError(message)
        logger.warning(message)
        return outcome

    def _record(self, patch: Patch, outcome: Outcome) -> Outcome:
        self._outcomes[patch.id] = outcome
        return outcome

    def revert(self, patch_ids: Iterable[str] | None = None) -> None:
        """Undo applied patches (all by default) and forget pending ones."""
        for patch_id in list(patch_ids if patch_ids is not None else self.patches):
            patch = self.patches[patch_id]
            if patch_id in self._originals:
                owner, attribute, original = self._originals.pop(patch_id)
                setattr(owner, attribute, original)
            elif self.outcome(patch_id).status is PatchStatus.PENDING:
                _lazy.cancel(patch.module, patch_id)
            self._outcomes.pop(patch_id, None)
