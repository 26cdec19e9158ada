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
from importlib.metadata import version as package_version

from packaging.version import InvalidVersion, Version

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


def supported_vllm_specifier(pairings: tuple[Pairing, ...] | None = None) -> str:
    """The supported vLLM release lines as a PEP 440 specifier, e.g. ``>=0.28,<0.34``.

    A minor release missing between the oldest and the newest is excluded
    (``!=0.30.*``). Default: the releases of the shipped compat.toml.
    """
    pairings = pairings or supported_releases()
    lines = sorted({pairing.vllm.release[:2] for pairing in pairings})
    (low_major, low_minor), (high_major, high_minor) = lines[0], lines[-1]
    parts = [f">={low_major}.{low_minor}", f"<{high_major}.{high_minor + 1}"]
    if low_major == high_major:
        parts += [
            f"!={low_major}.{minor}.*"
            for minor in range(low_minor, high_minor + 1)
            if (low_major, minor) not in lines
        ]
    return ",".join(parts)


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


def _installed_torch() -> str | None:
    try:
        return package_version("torch")
    except PackageNotFoundError:
        return None


def _torch_problem(pairing: Pairing, version: VllmVersion, torch_version: str) -> str | None:
    """Why ``torch_version`` does not go with this vLLM, or None when it does."""
    try:
        installed = Version(torch_version).base_version
    except InvalidVersion:
        installed = torch_version
    if installed == Version(pairing.torch).base_version:
        return None
    return (
        f"{_describe(version)} goes with torch {pairing.torch} (compat.toml), but torch "
        f"{torch_version} is installed; install a matching pair: "
        f"pip install 'torch=={pairing.torch}'"
    )


def _cuda_python_problem() -> str | None:
    """cuda-python 12's wheel ships ``cuda/bindings`` itself; next to cuda-bindings 13
    (which vLLM's CUDA dependencies bring, on NPU and CPU machines too) the two
    overwrite each other's files and importing vLLM's model runner fails."""
    try:
        cuda_python = distribution("cuda-python")
        bindings = package_version("cuda-bindings")
    except PackageNotFoundError:
        return None
    if not any(str(path).startswith("cuda/bindings/") for path in cuda_python.files or ()):
        return None
    return (
        f"cuda-python {cuda_python.version} and cuda-bindings {bindings} both install "
        "cuda/bindings, and vLLM fails to import from the mix ('cuda.bindings.runtime' "
        "has no attribute ...); install the cuda-python that goes with cuda-bindings: "
        "pip install 'cuda-python>=13'"
    )


def check(version: VllmVersion | None = None, torch_version: str | None = None) -> Verdict:
    """The gate's verdict on ``version`` and ``torch_version`` (default: the installed ones).

    A supported vLLM line with a torch other than the one compat.toml pairs it with
    is refused too (torch's local build tag, ``+cpu``, does not count), and so is an
    installation whose CUDA Python bindings overwrite each other.
    """
    pairings = supported_releases()
    version = version or vllm_version()
    release = version.release
    by_line = {pairing.line: pairing for pairing in pairings}
    problem: str | None
    if release is not None and f"{release.major}.{release.minor}" in by_line:
        torch_version = torch_version or _installed_torch()
        pairing = by_line[f"{release.major}.{release.minor}"]
        problem = (
            torch_version and _torch_problem(pairing, version, torch_version)
        ) or _cuda_python_problem()
        if not problem:
            return Verdict(allowed=True)
        return _refused_unless_allowed(problem)
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
    return _refused_unless_allowed(problem)


def _refused_unless_allowed(problem: str) -> Verdict:
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
