"""Device backends: the small interface the platform runs on, and its selection.

Two backends are built in: ``ascend`` (torch_npu, HCCL) and ``host`` (the CPU
with portable PyTorch kernels and gloo). The host backend is chosen only when
asked for with ``VLLM_NPU_DEVICE=host``; Ascend is chosen when torch_npu imports
and reports devices. Otherwise no backend is usable and the plugin stays inactive.
Other distributions may add backends, chosen by name only, through the
``vllm_npu.device_backends`` entry point group (``name = module:Class``; the
class is instantiated without arguments and raises ``DeviceBackendError`` when
it cannot be used here): the test-only ``ascend-standin`` backend is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from vllm_npu.platform import _env, discovery

BACKEND_NAMES = ("host", "ascend")
"""The built-in backends."""


class DeviceBackendError(RuntimeError):
    """The requested device backend cannot be used; the message says why."""


@runtime_checkable
class DeviceBackend(Protocol):
    """What the platform needs from a device."""

    name: str
    device_type: str
    dispatch_key: str
    dist_backend: str
    device_control_env_var: str
    ray_device_key: str
    kernel_set: str
    """Which implementation of each kernel runs: "ascend" (torch_npu's fused ops) or
    "reference" (portable PyTorch); attention, custom ops and the model runner follow it."""
    ray_noset_device_env_vars: tuple[str, ...]
    """Variables that stop Ray from narrowing the visible devices of a worker,
    so that vLLM's Ray executor can pick the device by local rank."""

    def device_count(self) -> int:
        """Devices this process may use; a node runs at most this many ranks."""
        ...

    def runtime_initialized(self) -> bool:
        """Whether this process has initialised the device runtime; queries that would
        initialise it (the device's memory) are refused before."""
        ...

    def set_device(self, device: torch.device) -> None: ...

    def synchronize(self) -> None: ...

    def empty_cache(self) -> None: ...

    def mem_get_info(self, device_index: int | None = 0) -> tuple[int, int]:
        """(free, total) bytes of a device (None: the current one)."""
        ...

    def device_name(self, device_index: int = 0) -> str: ...

    def manual_seed_all(self, seed: int) -> None: ...


@dataclass(frozen=True)
class Selection:
    """The outcome of backend selection: a backend, or the reason there is none."""

    backend: DeviceBackend | None
    reason: str


def select_backend() -> Selection:
    """Pick the device backend from the environment and the machine."""
    requested = _env.get(_env.DEVICE)
    if requested is not None:
        requested = requested.lower()
        if requested not in BACKEND_NAMES:
            return _plugged_in_backend(requested)
    if requested == "host":
        from vllm_npu.platform._host import HostBackend

        return Selection(HostBackend(), f"{_env.DEVICE}=host")

    from vllm_npu.platform import _ascend

    problem = _ascend.unavailable_reason()
    if problem is None:
        return Selection(_ascend.AscendBackend(), "torch_npu reports NPUs")
    if requested == "ascend":
        raise DeviceBackendError(
            f"{_env.DEVICE}=ascend but the Ascend backend is unusable: {problem}."
        )
    return Selection(None, problem)


def _plugged_in_backend(name: str) -> Selection:
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group=discovery.DEVICE_BACKENDS_GROUP)}
    if name not in found:
        names = ", ".join((*BACKEND_NAMES, *sorted(found)))
        raise DeviceBackendError(
            f"{_env.DEVICE}={name!r} is not a device backend; set it to one of {names} "
            "or unset it."
        )
    entry_point = found[name]
    owner = entry_point.dist.name if entry_point.dist else entry_point.value
    try:
        backend = entry_point.load()()
    except DeviceBackendError:
        raise
    except Exception as error:
        raise DeviceBackendError(
            f"{_env.DEVICE}={name}: the backend from {owner} fails to load ({error})."
        ) from error
    if not isinstance(backend, DeviceBackend):
        raise DeviceBackendError(
            f"{_env.DEVICE}={name}: {entry_point.value} from {owner} is not a device backend."
        )
    return Selection(backend, f"{_env.DEVICE}={name} ({owner})")
