"""Finding a patch target (``module:qualname``) and setting it."""

from __future__ import annotations

import sys
from typing import Any


class TargetMissing(LookupError):
    """The target's module or attribute does not exist."""


def module_imported(module: str) -> bool:
    return module in sys.modules


def resolve(module: str, qualname: str) -> tuple[Any, str, Any]:
    """``(owner, attribute, current object)`` of ``module:qualname``; imports the module."""
    import importlib

    try:
        owner: Any = importlib.import_module(module)
    except ImportError as error:
        raise TargetMissing(f"module {module} cannot be imported ({error})") from error
    *path, attribute = qualname.split(".")
    for name in path:
        if not hasattr(owner, name):
            raise TargetMissing(f"{module} has no {'.'.join(path)}")
        owner = getattr(owner, name)
    if not hasattr(owner, attribute):
        raise TargetMissing(f"{module}:{qualname} does not exist")
    if isinstance(owner, type) and attribute in vars(owner):
        # The class's own entry, so that a staticmethod or classmethod is restored
        # as one when the patch is reverted.
        return owner, attribute, vars(owner)[attribute]
    return owner, attribute, getattr(owner, attribute)
