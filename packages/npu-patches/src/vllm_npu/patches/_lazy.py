"""Run a callback right after a module is first imported (for lazy patches)."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

_callbacks: dict[str, dict[str, Callable[[ModuleType], None]]] = {}


class _Loader(importlib.abc.Loader):
    def __init__(self, wrapped: Any) -> None:
        self._wrapped = wrapped

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._wrapped.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._wrapped.exec_module(module)
        for callback in _callbacks.pop(module.__name__, {}).values():
            callback(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _callbacks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


_FINDER = _Finder()


def when_imported(
    module: str, key: str, callback: Callable[[ModuleType], None]
) -> None:
    """Call ``callback(module)`` once ``module`` has been imported (now if it is)."""
    if module in sys.modules:
        callback(sys.modules[module])
        return
    _callbacks.setdefault(module, {})[key] = callback
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def cancel(module: str, key: str) -> None:
    """Forget the callback ``key`` waiting for ``module``."""
    waiting = _callbacks.get(module, {})
    waiting.pop(key, None)
    if not waiting:
        _callbacks.pop(module, None)
