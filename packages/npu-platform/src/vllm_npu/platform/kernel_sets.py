"""Named kernel sets behind one protocol: the registry each op family's dispatch layer
keeps (attention, MLA, MoE, layer ops), so a device backend's set is found by the
name its backend gives (``DeviceBackend.kernel_set``).

A family makes one ``KernelSets`` with its protocol (a ``runtime_checkable``
``Protocol``) and registers its sets; a package outside vllm-npu registers its own
set under a new name the same way.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

K = TypeVar("K")


class KernelSets(Generic[K]):
    """The kernel sets of one op family, by name.

    ``family`` names the family in messages ("attention", "MoE"); ``protocol`` is the
    ``runtime_checkable`` protocol every set satisfies, ``protocol_path`` where a
    reader finds it (``vllm_npu.attention.kernels.AttentionKernels``).
    """

    def __init__(self, family: str, protocol: type[K], protocol_path: str) -> None:
        self.family = family
        self.protocol = protocol
        self.protocol_path = protocol_path
        self._by_name: dict[str, K] = {}

    def register(self, name: str, kernels: K) -> None:
        """Make ``kernels`` available as ``name``; a name cannot be taken twice."""
        if not isinstance(kernels, self.protocol):
            missing = [member for member in self.members() if not hasattr(kernels, member)]
            raise TypeError(
                f"{kernels!r} is not {_article(self.family)} {self.family} kernel set: it lacks "
                f"{', '.join(missing)} (see {self.protocol_path})"
            )
        registered = self._by_name.get(name)
        if registered is not None and registered is not kernels:
            raise ValueError(f"{self.family} kernel set {name!r} is already registered")
        self._by_name[name] = kernels

    def get(self, name: str) -> K:
        """The kernel set registered as ``name``."""
        try:
            return self._by_name[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.family} kernel set {name!r}; registered: "
                f"{', '.join(self.names())}"
            ) from None

    def names(self) -> tuple[str, ...]:
        """Names of the registered sets, sorted."""
        return tuple(sorted(self._by_name))

    def members(self) -> list[str]:
        """The protocol's attributes and public methods, in declaration order."""
        annotations: dict[str, Any] = getattr(self.protocol, "__annotations__", {})
        methods = [
            member
            for member, value in vars(self.protocol).items()
            if callable(value) and not member.startswith("_")
        ]
        return [*annotations, *methods]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


__all__ = ["KernelSets"]
