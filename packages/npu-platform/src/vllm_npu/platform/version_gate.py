"""The version gate: the plugin activates only on a vLLM release that compat.toml lists.

The releases come from the compat.toml that vllm-npu-platform ships in its
``.dist-info/extra_metadata/``, copied there from the repository's at build
time. A release line is supported whole: vLLM 0.30.1 counts as 0.30.
``VLLM_NPU_ALLOW_UNSUPPORTED_VLLM=1`` lets a maintainer try another release
anyway; ``VLLM_NPU_VLLM_VERSION`` says which release a development build is.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution

from packaging.version import Version

from vllm_npu.platform.versions import VERSION_OVERRIDE_ENV, VllmVersion, vllm_version

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ALLOW_UNSUPPORTED_ENV = "VLLM_NPU_ALLOW_UNSUPPORTED_VLLM"
"""Set to 1 to activate on a vLLM release compat.toml does not list."""

DISTRIBUTION = "vllm-npu-platform"
COMPAT_METADATA_FILE = "extra_metadata/compat.toml"


class CompatDataError(RuntimeError):
    """vllm-npu-platform's copy of compat.toml is missing or unreadable."""


@dataclass(frozen=True)
class Pairing:
    """One supported vLLM release and what goes with it: a table of compat.toml."""

    vllm: Version
    vllm_npu: str
    """Version of the vllm-npu meta-package of this release line."""
    torch: str
    torch_npu: str
    components: Mapping[str, str]

    @property
    def line(self) -> str:
        """The release line, ``X.Y``."""
        major, minor = self.vllm.release[:2]
        return f"{major}.{minor}"


@dataclass(frozen=True)
class Verdict:
    """Whether the plugin may activate on this vLLM, and what to tell the user."""

    allowed: bool
    message: str | None = None
    """One line: why this vLLM is not supported (also when allowed anyway)."""


def parse_compat(text: str) -> tuple[Pairing, ...]:
    """The pairings of a compat.toml document, oldest vLLM first."""
    releases = tomllib.loads(text)["vllm"]
    return tuple(
        sorted(
            (
                Pairing(
                    vllm=Version(release),
                    vllm_npu=entry["vllm-npu"],
                    torch=entry["torch"],
                    torch_npu=entry["torch-npu"],
                    components=dict(entry["components"]),
                )
                for release, entry in releases.items()
            ),
            key=lambda pairing: pairing.vllm,
        )
    )


def supported_releases() -> tuple[Pairing, ...]:
    """Every supported vLLM release, from the compat.toml shipped with this package."""
    try:
        text = distribution(DISTRIBUTION).read_text(COMPAT_METADATA_FILE)
    except PackageNotFoundError:
        text = None
    if text is None:
        raise CompatDataError(
            f"{DISTRIBUTION} is installed without its compat.toml "
            f"({COMPAT_METADATA_FILE} in its metadata); reinstall it from a wheel "
            "or the workspace."
        )
    return parse_compat(text)


def _install_hint(release: Version | None, pairings: tuple[Pairing, ...]) -> str:
    if release is not None and release < pairings[0].vllm:
        nearest = pairings[0]
        return f"pip install 'vllm-npu=={nearest.line}.*' (brings vLLM {nearest.line})"
    nearest = pairings[-1]
    return (
        f"pip install 'vllm-npu=={nearest.line}.*' (brings vLLM {nearest.line}), "
        "or a newer vllm-npu if one supports your vLLM"
    )


def _describe(version: VllmVersion) -> str:
    if version.source == "override":
        return (
            f"vLLM {version.installed} "
            f"(taken as {version.release} from {VERSION_OVERRIDE_ENV})"
        )
    return f"vLLM {version.installed}"


def check(version: VllmVersion | None = None) -> Verdict:
    """The gate's verdict on ``version`` (default: the installed vLLM)."""
    pairings = supported_releases()
    version = version or vllm_version()
    release = version.release
    lines = {pairing.line for pairing in pairings}
    if release is not None and f"{release.major}.{release.minor}" in lines:
        return Verdict(allowed=True)
    supported = ", ".join(pairing.line for pairing in pairings)
    if release is None:
        problem = (
            f"cannot tell which release vLLM {version.installed} is "
            f"(supported: {supported}); "
            f"set {VERSION_OVERRIDE_ENV} to the release it is based on"
        )
    else:
        problem = (
            f"{_describe(version)} is not supported (supported: {supported}); "
            f"install a matching pair: {_install_hint(release, pairings)}"
        )
    allowed = os.environ.get(ALLOW_UNSUPPORTED_ENV, "").strip() == "1"
    if allowed:
        return Verdict(
            allowed=True,
            message=f"{problem}; trying anyway ({ALLOW_UNSUPPORTED_ENV}=1).",
        )
    return Verdict(
        allowed=False,
        message=f"{problem}; or set {ALLOW_UNSUPPORTED_ENV}=1 to try anyway.",
    )
