"""vllm-npu-platform's vLLM and torch ranges and its copy of compat.toml, at build time.

The platform depends on the vLLM and torch releases compat.toml lists (as
ranges, minus any skipped minor release) and ships compat.toml in its
``.dist-info/extra_metadata/`` for the version gate to read at start-up. The
sdist carries compat.toml; a wheel built from the sdist keeps its metadata.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.metadata.plugin.interface import MetadataHookInterface
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

COMPAT_FILE = "compat.toml"


def compat_path(root: str) -> Path:
    """compat.toml next to this project (an sdist) or at the repository root."""
    project = Path(root)
    for candidate in (project / COMPAT_FILE, project.parents[1] / COMPAT_FILE):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{COMPAT_FILE} not found next to {project} nor at the repository root"
    )


def minor_range(versions: Iterable[str]) -> str:
    """``>=A.B,<C.D`` over the minor releases of ``versions``, excluding gaps."""
    minors = sorted({Version(v).release[:2] for v in versions})
    (low_major, low_minor), (high_major, high_minor) = minors[0], minors[-1]
    parts = [f">={low_major}.{low_minor}", f"<{high_major}.{high_minor + 1}"]
    if low_major == high_major:
        parts += [
            f"!={low_major}.{minor}.*"
            for minor in range(low_minor, high_minor + 1)
            if (low_major, minor) not in minors
        ]
    return ",".join(parts)


class CompatMetadataHook(MetadataHookInterface):
    """Dependencies: the hook's ``dependencies``, vLLM and torch from compat.toml."""

    def update(self, metadata: dict[str, Any]) -> None:
        releases = tomllib.loads(compat_path(self.root).read_text())["vllm"]
        metadata["dependencies"] = [
            f"vllm{minor_range(releases)}",
            f"torch{minor_range(entry['torch'] for entry in releases.values())}",
            *self.config.get("dependencies", []),
        ]


class CompatBuildHook(BuildHookInterface):
    """compat.toml into the wheel's extra metadata (and into the sdist)."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        source = str(compat_path(self.root))
        if self.target_name == "sdist":
            build_data["force_include"][source] = COMPAT_FILE
        else:
            build_data["extra_metadata"][source] = COMPAT_FILE
