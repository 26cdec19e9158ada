"""The vLLM release in use, as version gates see it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from packaging.version import InvalidVersion, Version

VERSION_OVERRIDE_ENV = "VLLM_NPU_VLLM_VERSION"


@dataclass(frozen=True)
class VllmVersion:
    """The installed vLLM and the release that gating treats it as."""

    installed: str
    release: Version | None
    """The release gates compare against; None when it cannot be told."""
    source: str
    """How ``release`` was found: ``release``, ``override``, ``base of a dev build``."""


def _installed() -> str:
    try:
        return version("vllm")
    except PackageNotFoundError:
        return "not installed"


def release_of(version_string: str) -> Version | None:
    """The release a version string names, or is a development build of.

    ``0.30.1.dev12+gabc`` is a build on the way to 0.30.1, based on 0.30.0 when
    it is a patch release; vLLM tags ``X.Y.Z`` and development builds count up
    to the next one, so the base release is ``X.Y.(Z-1)`` for Z > 0 and
    cannot be told for ``X.Y.0.devN``.
    """
    try:
        parsed = Version(version_string)
    except InvalidVersion:
        return None
    if not (parsed.is_devrelease or parsed.local or parsed.is_prerelease):
        return parsed
    major, minor, micro = (list(parsed.release) + [0, 0, 0])[:3]
    if parsed.is_devrelease or parsed.is_prerelease:
        if micro == 0:
            return None
        return Version(f"{major}.{minor}.{micro - 1}")
    return Version(f"{major}.{minor}.{micro}")


def vllm_version() -> VllmVersion:
    """The vLLM version gates use; ``VLLM_NPU_VLLM_VERSION`` overrides it."""
    installed = _installed()
    override = os.environ.get(VERSION_OVERRIDE_ENV, "").strip()
    if override:
        try:
            return VllmVersion(installed, Version(override), "override")
        except InvalidVersion as error:
            raise ValueError(
                f"{VERSION_OVERRIDE_ENV}={override!r} is not a version (e.g. 0.30.0)."
            ) from error
    release = release_of(installed)
    if release is not None and str(release) != installed:
        return VllmVersion(installed, release, "base of a dev build")
    return VllmVersion(installed, release, "release")
