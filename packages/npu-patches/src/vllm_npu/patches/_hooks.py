"""Entry points that apply our patches in each vLLM process."""

from __future__ import annotations

import multiprocessing

from vllm_npu.patches.declaration import Process
from vllm_npu.patches.registry import manager


def apply_for_process(process: Process) -> None:
    """``vllm_npu.process_hooks`` entry point: the platform and the worker call it."""
    manager().apply(process)


def on_general_plugins() -> None:
    """``vllm.general_plugins`` entry point: vLLM calls it once in every process.

    Only the engine-core process acts here; the platform and the worker have
    their own hooks. Nothing happens unless our platform is the active one.
    """
    if not multiprocessing.current_process().name.startswith("EngineCore"):
        return
    from vllm.platforms import current_platform

    if type(current_platform).__module__.startswith("vllm_npu."):
        apply_for_process("engine_core")
