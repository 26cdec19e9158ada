"""The human-readable list of patches, generated from their declarations."""

from __future__ import annotations

from collections.abc import Iterable

from vllm_npu.patches.declaration import Patch

HEADER = (
    "# Patches to vLLM and torch\n\n"
    "Generated from the declarations in `packages/npu-patches` by "
    "`vllm-npu patches docs`; do not edit by hand.\n\n"
)
COLUMNS = ("id", "processes", "target", "vLLM", "why", "how", "upstream", "removal")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def markdown(patches: Iterable[Patch]) -> str:
    rows = [
        (
            f"`{patch.id}`",
            ", ".join(patch.processes),
            f"`{patch.target}`",
            f"`{patch.vllm_versions}`",
            patch.why + ("" if patch.condition is None else f" Needed {patch.condition_text}."),
            patch.how,
            patch.upstream,
            patch.removal,
        )
        for patch in sorted(patches, key=lambda patch: patch.id)
    ]
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows),
    ]
    return HEADER + "\n".join(lines) + "\n"
