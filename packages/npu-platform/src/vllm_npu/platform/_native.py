"""Ascend's native side, looked at without importing torch: CANN and torch_npu.

Installed where CANN is missing, torch_npu breaks ``import torch`` itself:
torch auto-loads it as a device backend and the load fails on ``libhccl.so``.
So these checks must run before anything imports torch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

AUTOLOAD_ENV = "TORCH_DEVICE_BACKEND_AUTOLOAD"
TOOLKIT_ENVS = ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH")
DEFAULT_TOOLKIT = Path("/usr/local/Ascend/ascend-toolkit/latest")


def _toolkit_dirs() -> list[Path]:
    dirs = [Path(os.environ[name]) for name in TOOLKIT_ENVS if os.environ.get(name)]
    return [*dirs, DEFAULT_TOOLKIT]


def cann_version() -> str | None:
    """The CANN toolkit version from its install info, or None when none is found."""
    for toolkit in _toolkit_dirs():
        for info in (toolkit / "version.cfg", *toolkit.glob("*/ascend_toolkit_install.info")):
            if not info.is_file():
                continue
            for line in info.read_text(errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip() in ("version", "Version", "toolkit_version"):
                    return value.strip().strip('"[]')
    return None


def torch_npu_problem() -> str | None:
    """Why torch_npu makes ``import torch`` fail here, or None when it does not."""
    try:
        version("torch-npu")
    except PackageNotFoundError:
        return None
    if os.environ.get(AUTOLOAD_ENV, "1") == "0":
        return None
    probe = subprocess.run(
        [sys.executable, "-c", "import torch"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if probe.returncode == 0:
        return None
    last_line = (probe.stderr.strip().splitlines() or ["import torch failed"])[-1]
    return (
        f"torch_npu is installed but `import torch` fails ({last_line}): install "
        f"CANN and source its set_env.sh, or set {AUTOLOAD_ENV}=0 to use the host backend"
    )
