"""Differences between the vLLM releases we support, detected by feature."""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch

from vllm_npu.platform import _spec_decode_kernels
from vllm_npu.platform._kernels import compute_slot_mapping

SLOT_MAPPING_KERNEL = "vllm.v1.worker.block_table.ComputeSlotMappingKernel.kernel"
REJECTION_SAMPLER_MODULE = "vllm.v1.sample.rejection_sampler"
REJECTION_SAMPLER_KERNELS = (
    "rejection_greedy_sample_kernel",
    "rejection_random_sample_kernel",
    "expand_kernel",
    "sample_recovered_tokens_kernel",
)
"""The Triton kernels of vLLM's rejection sampler (speculative decoding), the same
names and arguments in 0.28 to 0.33."""


def compute_slot_mapping_in_kernel_blocks(
    num_tokens: int,
    max_num_tokens: int,
    query_start_loc_ptr: torch.Tensor,
    positions_ptr: torch.Tensor,
    block_table_ptr: torch.Tensor,
    block_table_stride: int,
    block_size: int,
    slot_mapping_ptr: torch.Tensor,
    KV_CACHE_BLOCK_SIZE: int,  # noqa: N803 - the Triton kernel's argument names
    BLOCKS_PER_KV_BLOCK: int = 1,  # noqa: N803
    TOTAL_CP_WORLD_SIZE: int = 1,  # noqa: N803
    TOTAL_CP_RANK: int = 0,  # noqa: N803
    CP_KV_CACHE_INTERLEAVE_SIZE: int = 1,  # noqa: N803
    PAD_ID: int = -1,  # noqa: N803
    BLOCK_SIZE: int = 1024,  # noqa: N803
) -> None:
    """The slot-mapping kernel as vLLM before 0.32 calls it.

    The block table there counts kernel blocks of ``block_size`` tokens,
    ``BLOCKS_PER_KV_BLOCK`` of them per KV-cache block. Without context
    parallelism that is the same mapping with ``block_size``-token blocks.
    """
    if BLOCKS_PER_KV_BLOCK != 1 and TOTAL_CP_WORLD_SIZE != 1:
        raise NotImplementedError(
            "vllm-npu: context parallelism with kernel blocks smaller than KV-cache "
            "blocks needs vLLM 0.32 or newer on this backend."
        )
    compute_slot_mapping(
        num_tokens,
        max_num_tokens,
        query_start_loc_ptr,
        positions_ptr,
        block_table_ptr,
        block_table_stride,
        slot_mapping_ptr,
        KV_CACHE_BLOCK_SIZE=block_size,
        TOTAL_CP_WORLD_SIZE=TOTAL_CP_WORLD_SIZE,
        TOTAL_CP_RANK=TOTAL_CP_RANK,
        CP_KV_CACHE_INTERLEAVE_SIZE=CP_KV_CACHE_INTERLEAVE_SIZE,
        PAD_ID=PAD_ID,
    )


class _Launcher:
    """Stands in for a Triton kernel: ``launcher[grid](...)`` calls ``func``.

    ``arg_names`` and ``func`` are what vLLM's JIT warm-up helpers inspect.
    """

    def __init__(self, func: Callable[..., None]) -> None:
        self.func = func
        self.arg_names = tuple(inspect.signature(func).parameters)

    def __getitem__(self, grid: Any) -> Callable[..., None]:
        return self.func


def _parameter_names(kernel: Any) -> tuple[str, ...]:
    names = getattr(kernel, "arg_names", None)
    if names is None:
        names = inspect.signature(getattr(kernel, "func", kernel)).parameters
    return tuple(names)


def register_slot_mapping_kernel() -> str:
    """Route vLLM's Triton slot-mapping kernel to our PyTorch one; returns how.

    vLLM 0.31 and newer take it through ``vllm.triton_utils.dispatcher``;
    0.29-0.30 launch ``_COMPUTE_SLOT_MAPPING_KERNEL.kernel`` and 0.28 the
    module-level ``_compute_slot_mapping_kernel``, both replaced here. The
    kernel gained or lost ``block_size``/``BLOCKS_PER_KV_BLOCK`` on the way.
    """
    from vllm.v1.worker import block_table

    holder = getattr(block_table, "ComputeSlotMappingKernel", None)
    kernel = (
        holder.kernel
        if holder is not None
        else block_table._compute_slot_mapping_kernel
    )
    names = _parameter_names(kernel)
    impl = (
        compute_slot_mapping_in_kernel_blocks
        if "block_size" in names
        else compute_slot_mapping
    )
    register_kernels = _dispatcher_register_kernels()
    if register_kernels is not None:
        register_kernels({SLOT_MAPPING_KERNEL: impl})
        return "dispatcher"
    if holder is not None:
        block_table._COMPUTE_SLOT_MAPPING_KERNEL.kernel = _Launcher(impl)
        return "kernel object"
    block_table._compute_slot_mapping_kernel = _Launcher(impl)
    return "module attribute"


def _dispatcher_register_kernels() -> Callable[..., None] | None:
    try:
        from vllm.triton_utils.dispatcher import register_kernels
    except ImportError:
        return None

    def register_safely(overrides: dict[str, Callable[..., Any]]) -> None:
        with _hidden_from_module_scan(_modules_the_scan_cannot_read()):
            register_kernels(overrides)

    return register_safely


def _modules_the_scan_cannot_read() -> dict[str, Any]:
    """Loaded modules holding a value that ``hasattr(value, "__dict__")`` raises on.

    vLLM's ``register_kernels`` (0.31 on) scans every module in ``sys.modules``
    with that test, and only ``AttributeError`` is swallowed by it. humming
    0.1.16-0.1.17 (vLLM 0.31-0.32) keeps a ``DeviceInfo`` in ``humming.device``
    whose attribute lookup loads a CUDA extension: ``ImportError: libcuda.so.1``
    out of the scan, off CUDA, once anything imported that module.
    """
    unreadable = {}
    for name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for value in list(namespace.values()):
            try:
                hasattr(value, "__dict__")
            except Exception:  # noqa: BLE001 - whatever the scan would raise
                unreadable[name] = module
                break
    return unreadable


@contextlib.contextmanager
def _hidden_from_module_scan(modules: dict[str, Any]) -> Iterator[None]:
    """Take ``modules`` out of ``sys.modules`` for the scan, and put them back.

    Nothing in them can be one of vLLM's kernels (reading them is what fails).
    """
    for name in modules:
        sys.modules.pop(name, None)
    try:
        yield
    finally:
        for name, module in modules.items():
            sys.modules.setdefault(name, module)


def register_rejection_sampler_kernels() -> str:
    """Route the rejection sampler's Triton kernels to our PyTorch ones; returns how.

    vLLM 0.31 and newer take them through ``vllm.triton_utils.dispatcher``. Before,
    the sampler launches the module attributes (0.28-0.29) or, in 0.30, warm-up
    owners holding the kernel as ``.kernel``: both are replaced here.
    """
    import importlib

    sampler = importlib.import_module(REJECTION_SAMPLER_MODULE)
    impls = {name: getattr(_spec_decode_kernels, name) for name in REJECTION_SAMPLER_KERNELS}
    register_kernels = _dispatcher_register_kernels()
    if register_kernels is not None:
        register_kernels(
            {f"{REJECTION_SAMPLER_MODULE}.{name}": impl for name, impl in impls.items()}
        )
        return "dispatcher"
    for name, impl in impls.items():
        original = getattr(sampler, name)
        launcher = _Launcher(impl)
        for owner in list(vars(sampler).values()):
            state = getattr(owner, "__dict__", None)
            if isinstance(state, dict) and state.get("kernel") is original:
                owner.kernel = launcher
                state.pop("_kernel_arg_names", None)
        setattr(sampler, name, launcher)
    return "module attributes"


def attention_backend_problems(backend_cls: Any, selector_config: Any) -> list[str]:
    """vLLM's own validation of ``backend_cls`` for this layer, as a list of reasons.

    ``validate_configuration`` gained arguments over releases; pass those this
    vLLM knows.
    """
    validate = getattr(backend_cls, "validate_configuration", None)
    if validate is None:
        return []
    accepted = inspect.signature(validate).parameters
    arguments = {
        name: value
        for name, value in selector_config._asdict().items()
        if name in accepted
    }
    if "device_capability" in accepted:
        arguments["device_capability"] = None
    return list(validate(**arguments))
