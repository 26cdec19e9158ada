"""Which stand-in ops a process called, and how, for tests that check the calls later
or in another process.

With ``VLLM_NPU_STANDIN_CALL_LOG`` set to a file, the first call of each op in a
process appends the op's name to it (one line, so concurrent processes can share it),
and so does the first ``torch.npu.set_device`` of each NPU, as ``set_device:<index>``.

With ``VLLM_NPU_STANDIN_CALL_SPECS`` set to a file, every call that returns appends
one JSON line: the op's name, the spec of each positional and keyword argument and
the spec of its result (distinct calls only, at most ``MAX_SPECS_PER_OP`` per op and
process). A spec is what the real op's schema and meta kernel need:

- a tensor: ``{"tensor": [shape], "dtype": "float16"}``;
- ``None``: ``null``; a bool, int, float or str: ``{"bool": v}`` (``int``, ``float``,
  ``str``); a ``torch.dtype``: ``{"scalar_type": "float16"}``;
- a list or tuple: ``{"list": [specs]}`` or ``{"tuple": [specs]}``;
- anything else: ``{"unknown": "<type name>"}`` (a checker refuses it by name).

``vllm_npu.testing.torch_npu_conformance`` reads these lines back.
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import torch

CALL_LOG_ENV = "VLLM_NPU_STANDIN_CALL_LOG"
CALL_SPECS_ENV = "VLLM_NPU_STANDIN_CALL_SPECS"
MAX_SPECS_PER_OP = 64
_called: set[str] = set()
_specs_seen: set[str] = set()
_specs_per_op: Counter[str] = Counter()

F = TypeVar("F", bound=Callable[..., Any])


def spec(value: Any) -> Any:
    """The JSON-able spec of an argument or result (see the module docstring)."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return {"tensor": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")}
    if isinstance(value, torch.dtype):
        return {"scalar_type": str(value).removeprefix("torch.")}
    for kind in (bool, int, float, str):  # bool before int: True is an int too
        if isinstance(value, kind):
            return {kind.__name__: value}
    if isinstance(value, tuple):
        return {"tuple": [spec(item) for item in value]}
    if isinstance(value, list):
        return {"list": [spec(item) for item in value]}
    return {"unknown": f"{type(value).__module__}.{type(value).__qualname__}"}


def log_device(index: int) -> None:
    """Log that this process set NPU ``index`` as its device (first time only)."""
    _log_name(f"set_device:{index}")


def _log_name(name: str) -> None:
    if name in _called:
        return
    _called.add(name)
    path = os.environ.get(CALL_LOG_ENV)
    if path:
        with open(path, "a") as log:
            log.write(name + "\n")


def _log_spec(path: str, name: str, arguments: dict[str, Any], result: Any) -> None:
    key = json.dumps([name, arguments], sort_keys=True)
    if key in _specs_seen or _specs_per_op[name] >= MAX_SPECS_PER_OP:
        return
    _specs_seen.add(key)
    _specs_per_op[name] += 1
    line = json.dumps({"op": name, **arguments, "result": spec(result)}, sort_keys=True)
    with open(path, "a") as log:
        log.write(line + "\n")


def recorded(op: F) -> F:
    name = op.__name__

    @functools.wraps(op)
    def call(*args: Any, **kwargs: Any) -> Any:
        _log_name(name)
        path = os.environ.get(CALL_SPECS_ENV)
        if not path:
            return op(*args, **kwargs)
        arguments = {
            "args": [spec(a) for a in args],
            "kwargs": {k: spec(v) for k, v in kwargs.items()},
        }
        result = op(*args, **kwargs)
        _log_spec(path, name, arguments, result)
        return result

    return call  # type: ignore[return-value]
