"""Config checks: turn off what the selected device backend cannot do, once, loudly."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from vllm.logger import init_logger

if TYPE_CHECKING:
    from vllm.config import VllmConfig

    from vllm_npu.platform.device import DeviceBackend

logger = init_logger("vllm.vllm_npu.platform")

announced: set[str] = set()
"""Changes already logged in this process: each is logged once."""


def _announce(message: str) -> None:
    if message not in announced:
        announced.add(message)
        logger.info(message)


def _turn_off(owner: Any, attribute: str, off_value: Any, what: str, why: str) -> None:
    if not hasattr(owner, attribute):
        return
    current = getattr(owner, attribute)
    if current == off_value or (off_value is False and not current):
        return
    setattr(owner, attribute, off_value)
    _announce(f"vllm-npu: {what} turned off ({why}).")


def adapt_to_backend(vllm_config: VllmConfig, backend: DeviceBackend) -> None:
    """Change settings the backend cannot honour, each logged once."""
    from vllm.config import CompilationMode, CUDAGraphMode

    compilation = vllm_config.compilation_config
    parallel = vllm_config.parallel_config
    scheduler = vllm_config.scheduler_config
    why = f"not supported on the {backend.name} backend"

    _turn_off(compilation, "cudagraph_mode", CUDAGraphMode.NONE, "CUDA graphs", why)
    if getattr(compilation, "cudagraph_capture_sizes", None):
        compilation.cudagraph_capture_sizes = []
    _turn_off(scheduler, "async_scheduling", False, "async scheduling", why)
    _turn_off(parallel, "disable_custom_all_reduce", True, "custom all-reduce", why)
    _turn_off(parallel, "enable_dbo", False, "dual-batch overlap", why)
    pass_config = compilation.pass_config
    for name in sorted(vars(pass_config)):
        if name.startswith("fuse_"):
            _turn_off(pass_config, name, False, f"compilation pass {name}", why)

    if backend.kernel_set == "ascend" and compilation.mode != CompilationMode.NONE:
        # Inductor emits Triton/C++ kernels, not NPU ones, and ACL graph capture is
        # not implemented: the torch_npu kernels run eagerly.
        compilation.mode = CompilationMode.NONE
        if compilation.custom_ops == ["none"]:  # vLLM's default for compiled modes
            compilation.custom_ops = ["all"]
        _announce(f"vllm-npu: graph compilation turned off ({why}); running eagerly.")
    elif compilation.mode == CompilationMode.VLLM_COMPILE:
        # Piecewise compilation splits graphs for CUDA graphs, which no backend
        # of ours captures; tracing once into inductor is the fastest mode seen.
        compilation.mode = CompilationMode.DYNAMO_TRACE_ONCE
        compilation.backend = "inductor"
        # Else inductor's wrapper checks sizes and NaNs on every call (vLLM's CPU
        # platform turns them off too).
        for check in ("size_asserts", "nan_asserts"):
            compilation.inductor_compile_config.setdefault(check, False)
        _announce(
            "vllm-npu: compilation mode VLLM_COMPILE replaced by DYNAMO_TRACE_ONCE "
            f"with inductor on the {backend.name} backend."
        )
    if getattr(compilation, "compile_sizes", None):
        compilation.compile_sizes = []

    if "VLLM_WORKER_MULTIPROC_METHOD" not in os.environ:
        # A forked child deadlocks in torch when the parent already started
        # OpenMP threads (host) or the NPU runtime (Ascend); vLLM's own CPU
        # platform makes the same choice.
        os.environ["VLLM_WORKER_MULTIPROC_METHOD"] = "spawn"
        _announce("vllm-npu: engine and worker processes are spawned, not forked.")


def adapt_block_size(vllm_config: VllmConfig, supported: list[Any]) -> None:
    """Use a KV cache block size the attention kernels support.

    ``supported`` is the attention backend's ``get_supported_kernel_block_sizes()``:
    ints, or vLLM's ``MultipleOf`` (any multiple works). An unsupported size the
    user chose is an error; vLLM's default is replaced by the first supported int.
    """
    cache = vllm_config.cache_config
    sizes = [size for size in supported if isinstance(size, int)]
    multiples = [getattr(size, "base", None) for size in supported if not isinstance(size, int)]
    block_size = cache.block_size
    if block_size is None or not sizes:
        return
    if block_size in sizes or any(m and block_size % m == 0 for m in multiples):
        return
    if getattr(cache, "user_specified_block_size", False):
        raise ValueError(
            f"vllm-npu: block_size {block_size} is not supported by the attention "
            f"kernels here (supported: {', '.join(map(str, sizes))}); pass --block-size "
            f"{sizes[0]} or leave it unset."
        )
    cache.block_size = sizes[0]
    _announce(f"vllm-npu: KV cache block size {sizes[0]}, as the attention kernels require.")
