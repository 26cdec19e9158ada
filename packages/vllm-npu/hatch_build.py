"""Version and pins of the vllm-npu meta-package, read from compat.toml at build time.

The meta-package is built for one vLLM release of compat.toml: the one named
by ``VLLM_NPU_BUILD_FOR_VLLM`` (e.g. ``0.30.0``), else the newest. Its version
is that release line's ``vllm-npu`` version and it pins ``vllm==X.Y.*``, torch
and the five components exactly, plus the row's ``requires``. The sdist carries
compat.toml; a wheel built from the sdist keeps the sdist's metadata.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.metadata.plugin.interface import MetadataHookInterface
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

BUILD_FOR_ENV = "VLLM_NPU_BUILD_FOR_VLLM"
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


def chosen_release(releases: dict[str, Any]) -> str:
    """The release named by ``VLLM_NPU_BUILD_FOR_VLLM``, else the newest one."""
    requested = os.environ.get(BUILD_FOR_ENV, "").strip()
    if not requested:
        return max(releases, key=Version)
    if requested not in releases:
        known = ", ".join(sorted(releases, key=Version))
        raise ValueError(
            f"{BUILD_FOR_ENV}={requested} is not in {COMPAT_FILE} (known: {known})"
        )
    return requested


class CompatMetadataHook(MetadataHookInterface):
    """Sets version, dependencies and the ``ascend`` and ``ray`` extras from compat.toml."""

    def update(self, metadata: dict[str, Any]) -> None:
        releases = tomllib.loads(compat_path(self.root).read_text())["vllm"]
        release = chosen_release(releases)
        entry = releases[release]
        major, minor = Version(release).release[:2]
        metadata["version"] = entry["vllm-npu"]
        metadata["dependencies"] = [
            f"vllm=={major}.{minor}.*",
            f"torch=={entry['torch']}",
            *(f"{name}=={version}" for name, version in entry["components"].items()),
            *entry.get("requires", []),
        ]
        metadata["optional-dependencies"] = {
            "ascend": [f"torch-npu=={entry['torch-npu']}"],
            # The platform declares the Ray it configures vLLM's Ray executor for.
            "ray": [f"vllm-npu-platform[ray]=={entry['components']['vllm-npu-platform']}"],
        }


class CompatBuildHook(BuildHookInterface):
    """Ships compat.toml in the sdist, so that building from the sdist works."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name == "sdist":
            build_data["force_include"][str(compat_path(self.root))] = COMPAT_FILE
