"""Finding the plugin's components (worker, attention backend, communicator).

Components register under entry point groups of our own, so the platform never
imports a sibling package by name and a researcher's package can add a
component that is selected by name like ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from vllm_npu.platform import _env


@dataclass(frozen=True)
class ComponentKind:
    """One kind of component: its entry point group and how it is chosen."""

    label: str
    group: str
    env_var: str
    provider: str
    """The distribution that ships the default component."""
    default_name: str = "npu"
    """The entry point name used when none is requested."""


DEFAULT_NAME = "npu"

WORKER = ComponentKind("worker", "vllm_npu.workers", _env.WORKER, "vllm-npu-worker")
ATTENTION_BACKEND = ComponentKind(
    "attention backend",
    "vllm_npu.attention_backends",
    _env.ATTENTION_BACKEND,
    "vllm-npu-attention",
)
MLA_ATTENTION_BACKEND = ComponentKind(
    "MLA attention backend",
    "vllm_npu.attention_backends",
    _env.MLA_ATTENTION_BACKEND,
    "vllm-npu-attention",
    default_name="npu-mla",
)
"""Attention backends for multi-head latent attention models (DeepSeek-V2/V3): the
same entry point group, chosen by a name of their own."""
COMMUNICATOR = ComponentKind(
    "communicator", "vllm_npu.communicators", _env.COMMUNICATOR, "vllm-npu-comm"
)
KINDS = (WORKER, ATTENTION_BACKEND, COMMUNICATOR)

DEVICE_BACKENDS_GROUP = "vllm_npu.device_backends"
"""Device backends beyond the built-in host and ascend, chosen by name only
(``VLLM_NPU_DEVICE``); see ``vllm_npu.platform.device``."""


class ComponentError(RuntimeError):
    """A component is missing, unknown or broken; the message says what to do."""


def registered(kind: ComponentKind) -> dict[str, EntryPoint]:
    """Every entry point registered for ``kind``, by name."""
    return {ep.name: ep for ep in entry_points(group=kind.group)}


def requested_name(kind: ComponentKind, configured: str | None = None) -> str:
    """The name to use: ``configured`` (engine config), else the environment, else the
    kind's default (``npu``)."""
    return configured or _env.get(kind.env_var) or kind.default_name


def find(kind: ComponentKind, name: str | None = None) -> EntryPoint:
    """The entry point for ``name`` (default: the requested one)."""
    name = name or requested_name(kind)
    available = registered(kind)
    if name in available:
        return available[name]
    if name == kind.default_name:
        raise ComponentError(
            f"No {kind.label} is installed: install {kind.provider} "
            f"(pip install {kind.provider}), or the vllm-npu meta-package."
        )
    known = ", ".join(sorted(available)) or "none"
    raise ComponentError(
        f"Unknown {kind.label} {name!r} (registered: {known}); check {kind.env_var} "
        f"or the entry point group {kind.group!r} of the package that should provide it."
    )


def qualname(kind: ComponentKind, name: str | None = None) -> str:
    """``module.Class`` of the component, for vLLM settings that take a qualname.

    The entry point is loaded, so a component that fails to import is reported
    here, with its name, rather than deep inside vLLM.
    """
    entry_point = find(kind, name)
    obj = load(kind, entry_point)
    return f"{obj.__module__}.{obj.__qualname__}"


def load(kind: ComponentKind, entry_point: EntryPoint) -> Any:
    """Import the object behind ``entry_point``, turning failures into ComponentError."""
    try:
        return entry_point.load()
    except Exception as error:
        dist = entry_point.dist.name if entry_point.dist else "its distribution"
        raise ComponentError(
            f"The {kind.label} {entry_point.name!r} ({entry_point.value}, from {dist}) "
            f"failed to import: {error}"
        ) from error
