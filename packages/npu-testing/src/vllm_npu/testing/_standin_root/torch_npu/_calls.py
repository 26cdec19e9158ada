"""Which stand-in ops a process called, for tests that run vLLM in other processes.

With ``VLLM_NPU_STANDIN_CALL_LOG`` set to a file, the first call of each op in a
process appends the op's name to it (one line, so concurrent processes can share it).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

CALL_LOG_ENV = "VLLM_NPU_STANDIN_CALL_LOG"
_called: set[str] = set()

F = TypeVar("F", bound=Callable[..., Any])


def recorded(op: F) -> F:
    @functools.wraps(op)
    def call(*args: Any, **kwargs: Any) -> Any:
        if op.__name__ not in _called:
            _called.add(op.__name__)
            path = os.environ.get(CALL_LOG_ENV)
            if path:
                with open(path, "a") as log:
                    log.write(op.__name__ + "\n")
        return op(*args, **kwargs)

    return call  # type: ignore[return-value]
