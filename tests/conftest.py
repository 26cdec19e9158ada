"""Shared fixtures of the cross-package tests: the host backend and tiny models."""

from __future__ import annotations

import os

# Before vLLM resolves its platform: every test here runs on the host backend,
# offline, with one OpenMP thread per process (2-core machines).
os.environ.setdefault("VLLM_NPU_DEVICE", "host")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("VLLM_NPU_HOST_KV_CACHE_GB", "0.25")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from vllm_npu.testing import TinyModelSpec, build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory):
    """Build (once per session) a tiny checkpoint per spec and return its folder."""
    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[TinyModelSpec, Path] = {}

    def build(spec: TinyModelSpec) -> Path:
        if spec not in built:
            built[spec] = build_tiny_model(root / f"{spec.arch}-{len(built)}", spec)
        return built[spec]

    return build
