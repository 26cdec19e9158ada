"""The ``vllm.platform_plugins`` entry point: activate only where a backend is usable.

vLLM calls the entry point in every process (twice when it activates) and
swallows the exceptions it raises, so problems are logged here, each once
per process, as one line on the ``vllm`` logger.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import NoReturn

from vllm.logger import init_logger

from vllm_npu.platform import version_gate
from vllm_npu.platform.device import DeviceBackendError, select_backend

logger = init_logger("vllm.vllm_npu.platform")

PLATFORM_QUALNAME = "vllm_npu.platform.npu_platform.NPUPlatform"

reported: set[str] = set()
"""Refusals and warnings already logged in this process."""


def _report_once(level: int, message: str) -> None:
    if message not in reported:
        reported.add(message)
        logger.log(level, "vllm-npu: %s", message)


def _refuse(message: str) -> NoReturn:
    _report_once(logging.ERROR, message)
    raise SystemExit(1)


def activate() -> str | None:
    """The platform's qualified name when a device backend is usable, else None.

    Never takes over a CUDA or plain CPU host: without NPUs and without
    ``VLLM_NPU_DEVICE=host`` the plugin stays inactive.

    Where a backend is usable but vLLM is a release compat.toml does not list,
    it logs one error line and stops the process (``SystemExit(1)``, which
    vLLM does not swallow): returning None would let vLLM carry on without a
    device and fail later with a traceback from its internals.
    """
    try:
        selection = select_backend()
    except DeviceBackendError as error:
        _report_once(logging.ERROR, str(error))
        return None
    if selection.backend is None:
        if importlib.util.find_spec("torch_npu") is not None:
            # torch_npu is installed, so this is meant to be an Ascend machine.
            _report_once(logging.ERROR, f"the Ascend backend is unusable: {selection.reason}")
        else:
            logger.debug("vllm-npu inactive: %s", selection.reason)
        return None
    try:
        verdict = version_gate.check()
    except (version_gate.CompatDataError, ValueError) as error:
        _refuse(str(error))
    if not verdict.allowed:
        _refuse(str(verdict.message))
    if verdict.message is not None:
        _report_once(logging.WARNING, verdict.message)
    logger.debug(
        "vllm-npu: %s backend selected (%s)", selection.backend.name, selection.reason
    )
    _skip_cuda_only_work()
    return PLATFORM_QUALNAME


CUDA_ONLY_WORK_OFF = {"HUMMING_DISABLE_PARALLEL_BUILD": "1"}
"""Environment settings that stop CUDA-only work no process of ours can use.

vLLM imports the humming kernel library, which on import starts two background
processes building its NVRTC (CUDA) helpers: about 10 s of CPU each, in every
vLLM process, for nothing on an NPU or the host. Set before vLLM imports it (the
platform resolves first) and inherited by the engine and worker processes; a
value the user set is kept."""


def _skip_cuda_only_work() -> None:
    for name, value in CUDA_ONLY_WORK_OFF.items():
        os.environ.setdefault(name, value)
