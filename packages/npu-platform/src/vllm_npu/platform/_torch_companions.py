"""torchvision, torchaudio and torchcodec against the installed torch.

vLLM imports them on its way up when they are installed, and a build made for
another torch breaks ``import vllm`` (``operator torchvision::nms does not
exist``). On an x86 host with torch's CPU build, ``pip install vllm`` pulls the
registry's default (CUDA) builds of them. Their metadata tells most of it: the
torch release they pin and their build tag (``+cpu``), which must be torch's.
torchcodec pins neither, so it is imported, alone, in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

COMPANIONS = ("torchvision", "torchaudio", "torchcodec")
IMPORT_CHECKED = ("torchcodec",)
"""Companions whose version carries no torch build tag: only importing them tells."""
IMPORT_TIMEOUT_S = 120


@dataclass(frozen=True)
class Finding:
    name: str
    version: str
    problem: str
    """Empty when the package fits the installed torch."""


def findings(torch_version: str | None) -> Iterable[Finding]:
    """Each installed companion and whether it fits ``torch_version``."""
    for name in COMPANIONS:
        try:
            found = distribution(name)
        except PackageNotFoundError:
            continue
        if torch_version is None:
            yield Finding(name, found.version, "")
            continue
        if name in IMPORT_CHECKED:
            mismatch = _import_failure(name)
        else:
            mismatch = _metadata_mismatch(found.version, found.requires or [], torch_version)
        problem = f"{name} {found.version} {mismatch}: {fix(torch_version)}" if mismatch else ""
        yield Finding(name, found.version, problem)


def fix(torch_version: str) -> str:
    return (
        "vLLM imports it and fails to start; uninstall it (pip uninstall -y torchvision "
        "torchaudio torchcodec: text models need none of them) or install its build made "
        f"for torch {torch_version} (from the index your torch came from)"
    )


def _metadata_mismatch(version: str, requires: list[str], torch_version: str) -> str | None:
    try:
        torch = Version(torch_version)
        own = Version(version)
    except InvalidVersion:
        return None
    for line in requires:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.name != "torch":
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        if not requirement.specifier.contains(torch, prereleases=True):
            return f"requires torch{requirement.specifier}, installed is {torch_version}"
    if own.local != torch.local:
        build = f"build +{own.local}" if own.local else "the default (CUDA) build"
        return f"is {build}, installed torch is {torch_version}"
    return None


def _import_failure(name: str) -> str | None:
    try:
        result = subprocess.run(
            [sys.executable, "-c", f"import {name}"],
            capture_output=True,
            text=True,
            timeout=IMPORT_TIMEOUT_S,
            # The packages this process would import, wherever they were found.
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
    except subprocess.TimeoutExpired:
        return f"does not import within {IMPORT_TIMEOUT_S} s"
    if result.returncode == 0:
        return None
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit code {result.returncode}"
    return f"does not import against this torch ({last[:200]})"
