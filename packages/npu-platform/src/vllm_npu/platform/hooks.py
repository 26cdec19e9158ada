"""Process hooks: let other distributions act when a vLLM process of ours starts.

Distributions register a callable under the entry point group
``vllm_npu.process_hooks``; it is called with the kind of process starting:
``platform`` (the main process, from the platform's early hook), ``worker``
(a worker, as it starts) or ``engine_core``. vllm-npu-patches applies its
patches this way, so the platform never imports it by name.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Literal

from vllm.logger import init_logger

logger = init_logger("vllm.vllm_npu.platform")

GROUP = "vllm_npu.process_hooks"
Process = Literal["platform", "worker", "engine_core"]
PROCESSES: tuple[Process, ...] = ("platform", "worker", "engine_core")


def run_process_hooks(process: Process) -> None:
    """Call every registered hook for ``process``; a failing hook is logged, not fatal.

    A hook that must stop start-up raises ``SystemExit`` or a ``RuntimeError``
    subclass carrying ``fatal = True``; those propagate.
    """
    for entry_point in entry_points(group=GROUP):
        try:
            hook = entry_point.load()
            hook(process)
        except Exception as error:
            if getattr(error, "fatal", False):
                raise
            logger.error(
                "vllm-npu: process hook %r (%s) failed in the %s process: %s",
                entry_point.name,
                entry_point.value,
                process,
                error,
            )
