"""How the stand-in models NNAL, the library the ATB ops run on.

The real module (torch_npu/op_plugin/atb/_atb_ops.py of the 2.13.0 wheel) loads
``lib/libop_plugin_atb.so`` when torch_npu is imported; that library needs NNAL's
``libatb.so`` from ``LD_LIBRARY_PATH`` (which ``source <nnal>/atb/set_env.sh`` sets,
with ``ATB_HOME_PATH``). When the load fails, torch_npu still imports: the error is
kept in ``NNAL_EX`` (``GLOBAL_E`` is the loader's own) and raised by the first ATB op
called. ``VLLM_NPU_STANDIN_NNAL`` models it: ``missing`` (libatb.so not found) or
``mismatch`` (an NNAL of another version: an undefined symbol); unset, NNAL works.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

NNAL_ENV = "VLLM_NPU_STANDIN_NNAL"
ATB_OPS = ("_npu_paged_attention", "_npu_reshape_and_cache")
"""The stand-in's ops that torch_npu registers from libop_plugin_atb.so."""

_LOADER_ERRORS = {
    "missing": "libatb.so: cannot open shared object file: No such file or directory",
    "mismatch": "libop_plugin_atb.so: undefined symbol: _ZN3atb9Operation5SetupEv",
}
# torch_npu's own wording for each failure (_atb_ops.py).
_NNAL_MESSAGES = {
    "missing": "Please check that the nnal package is installed. "
    "Please run 'source set_env.sh' in the NNAL installation path.",
    "mismatch": "Please check the version of the NNAL package. "
    "An undefined symbol was found, "
    "which may be caused by a version mismatch between NNAL and torch_npu.",
}

NNAL_EX: OSError | None = None
GLOBAL_E: OSError | None = None

_state = os.environ.get(NNAL_ENV, "")
if _state:
    if _state not in _NNAL_MESSAGES:
        raise ValueError(f"{NNAL_ENV}={_state!r}: use 'missing', 'mismatch' or leave it unset")
    GLOBAL_E = OSError(errno.ENOENT, _LOADER_ERRORS[_state])
    NNAL_EX = OSError(errno.ENOENT, _NNAL_MESSAGES[_state])

F = TypeVar("F", bound=Callable[..., Any])


def lazy_load_atb_so(op: F) -> F:
    """An ATB op: raises NNAL's load error on every call when NNAL did not load."""

    @functools.wraps(op)
    def call(*args: Any, **kwargs: Any) -> Any:
        if NNAL_EX is not None:
            raise NNAL_EX from GLOBAL_E
        return op(*args, **kwargs)

    return call  # type: ignore[return-value]
