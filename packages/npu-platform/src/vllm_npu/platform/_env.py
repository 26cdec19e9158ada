"""Environment variables of the plugin, read in one place."""

from __future__ import annotations

import os

DEVICE = "VLLM_NPU_DEVICE"
"""Device backend: ``host`` or ``ascend``; unset means Ascend when usable."""

ATTENTION_BACKEND = "VLLM_NPU_ATTENTION_BACKEND"
"""Name of the attention backend entry point to use (default ``npu``)."""

MLA_ATTENTION_BACKEND = "VLLM_NPU_MLA_ATTENTION_BACKEND"
"""Name of the attention backend entry point for MLA models (default ``npu-mla``)."""

WORKER = "VLLM_NPU_WORKER"
"""Name of the worker entry point to use (default ``npu``)."""

COMMUNICATOR = "VLLM_NPU_COMMUNICATOR"
"""Name of the communicator entry point to use (default ``npu``)."""

HOST_THREADS = "VLLM_NPU_HOST_THREADS"
"""Torch threads per worker process on the host backend (default: cores / workers)."""

PREFIX = "VLLM_NPU_"


def get(name: str) -> str | None:
    """The variable's value, or None when it is unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None
