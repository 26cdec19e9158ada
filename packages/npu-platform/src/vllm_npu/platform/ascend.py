"""The Ascend device backend and its checks, public for distributions that extend it
(such as the test-only stand-in backend of vllm-npu-testing)."""

from __future__ import annotations

from vllm_npu.platform._ascend import AscendBackend, nnal_problem, version_problem

__all__ = ["AscendBackend", "nnal_problem", "version_problem"]
