"""The Ascend device backend: torch_npu, NPUs and HCCL."""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any

import torch

NNAL_FIX = (
    "install NNAL (the Ascend-cann-nnal package of your CANN version) and run "
    "`source <NNAL install path>/atb/set_env.sh`, which sets ATB_HOME_PATH and "
    "LD_LIBRARY_PATH"
)
ATB_LIBRARY = "libatb.so"


def unavailable_reason() -> str | None:
    """Why the Ascend backend cannot be used here, or None when it can.

    Tells apart: torch_npu not installed; installed but CANN missing (its import
    fails on CANN's shared libraries); CANN present but no usable NPU (driver
    missing, or every device hidden).
    """
    if importlib.util.find_spec("torch_npu") is None:
        return "torch_npu is not installed (pip install 'vllm-npu[ascend]')"
    try:
        importlib.import_module("torch_npu")
    except Exception as error:  # torch_npu raises ImportError/OSError/RuntimeError
        return (
            f"torch_npu is installed but does not import ({error}): CANN is missing or "
            "not sourced; install CANN and source its set_env.sh"
        )
    npu = getattr(torch, "npu", None)
    try:
        count = npu.device_count() if npu is not None else 0
    except Exception as error:
        return f"torch_npu imports but the NPU driver does not answer ({error}); check the driver"
    if count == 0:
        return (
            "torch_npu imports but sees no NPU: the NPU driver is missing, or "
            "ASCEND_RT_VISIBLE_DEVICES hides every device (a list must be ascending)"
        )
    return version_problem() or nnal_problem()


def nnal_problem() -> str | None:
    """Why torch_npu's ATB ops (``_npu_reshape_and_cache``, ``_npu_paged_attention``)
    will fail on their first call, or None when NNAL loaded.

    torch_npu loads ``libop_plugin_atb.so`` at import; the library needs NNAL's
    ``libatb.so`` from ``LD_LIBRARY_PATH``. A failed load does not fail the import:
    torch_npu keeps the error (``op_plugin.atb._atb_ops.NNAL_EX``) and raises it from
    the first ATB op. That kept error is read here, without calling an op; a
    torch_npu without that module is checked by looking for libatb.so as the dynamic
    loader would.
    """
    try:
        atb_ops = importlib.import_module("torch_npu.op_plugin.atb._atb_ops")
    except ImportError:
        return _find_atb_library()
    error = getattr(atb_ops, "NNAL_EX", None)
    if error is None:
        return None
    cause = getattr(atb_ops, "GLOBAL_E", None) or error
    detail = " ".join(str(getattr(error, "strerror", None) or error).split())
    return (
        f"torch_npu's ATB ops cannot load NNAL ({' '.join(str(cause).split())}): {detail} "
        f"To fix: {NNAL_FIX}"
    )


def _find_atb_library() -> str | None:
    folders = [Path(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if any((folder / ATB_LIBRARY).is_file() for folder in folders):
        return None
    home = os.environ.get("ATB_HOME_PATH")
    where = f"ATB_HOME_PATH={home}" if home else "ATB_HOME_PATH is unset"
    return f"NNAL's {ATB_LIBRARY} is not on LD_LIBRARY_PATH ({where}); {NNAL_FIX}"


def version_problem() -> str | None:
    """torch_npu's version against the one compat.toml pairs with the running vLLM,
    or None when they match (or compat.toml does not list this vLLM: the version gate
    reports that)."""
    from packaging.version import InvalidVersion, Version

    from vllm_npu.platform import version_gate
    from vllm_npu.platform.versions import vllm_version

    torch_npu = importlib.import_module("torch_npu")
    installed = str(getattr(torch_npu, "__version__", ""))
    found = vllm_version()
    if found.release is None or not installed:
        return None
    line = (found.release.major, found.release.minor)
    try:
        pairing = next(
            (p for p in version_gate.supported_releases() if p.vllm.release[:2] == line), None
        )
    except version_gate.CompatDataError:
        return None
    if pairing is None:
        return None
    try:
        matches = Version(installed).base_version == Version(pairing.torch_npu).base_version
    except InvalidVersion:
        matches = False
    if matches:
        return None
    return (
        f"torch_npu {installed} does not match vLLM {found.installed}: compat.toml pairs it "
        f"with torch-npu {pairing.torch_npu} (and the CANN and NNAL that torch-npu release "
        f"names); pip install 'torch-npu=={pairing.torch_npu}'"
    )


def _npu() -> Any:
    return torch.npu  # type: ignore[attr-defined]


class AscendBackend:
    """NPUs through torch_npu."""

    name = "ascend"
    device_type = "npu"
    dispatch_key = "PrivateUse1"
    dist_backend = "hccl"
    kernel_set = "ascend"
    device_control_env_var = "ASCEND_RT_VISIBLE_DEVICES"
    ray_device_key = "NPU"
    ray_noset_device_env_vars = ("RAY_EXPERIMENTAL_NOSET_ASCEND_RT_VISIBLE_DEVICES",)

    def device_count(self) -> int:
        return int(_npu().device_count())

    def runtime_initialized(self) -> bool:
        """Whether this process initialised the NPU runtime (torch_npu allows one
        initialisation per process: the front end must leave it to the workers)."""
        return bool(_npu().is_initialized())

    def set_device(self, device: torch.device) -> None:
        _npu().set_device(device)

    def synchronize(self) -> None:
        _npu().synchronize()

    def empty_cache(self) -> None:
        _npu().empty_cache()

    def mem_get_info(self, device_index: int | None = 0) -> tuple[int, int]:
        """(free, total) bytes of NPU ``device_index`` (None: the current one);
        initialises the runtime in this process."""
        free, total = _npu().mem_get_info(device_index)
        return int(free), int(total)

    def device_name(self, device_index: int = 0) -> str:
        return str(_npu().get_device_name(device_index))

    def manual_seed_all(self, seed: int) -> None:
        _npu().manual_seed_all(seed)
