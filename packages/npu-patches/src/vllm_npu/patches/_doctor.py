"""The patches' part of ``vllm-npu doctor``: each patch's status in this environment."""

from __future__ import annotations

from vllm_npu.patches.declaration import PatchStatus
from vllm_npu.patches.declared import DECLARED_PATCHES
from vllm_npu.patches.manager import PatchManager
from vllm_npu.platform.doctor import Row

TROUBLE = (PatchStatus.DRIFTED, PatchStatus.FAILED)


def rows() -> list[Row]:
    outcomes = PatchManager(DECLARED_PATCHES).dry_run()
    return [
        Row(
            "patches",
            patch.id,
            f"{outcomes[patch.id].status.value} {outcomes[patch.id].detail}".strip(),
            f"patch {patch.id}: {outcomes[patch.id].detail}; see `vllm-npu patches check`"
            if outcomes[patch.id].status in TROUBLE
            else "",
        )
        for patch in DECLARED_PATCHES
    ]
