"""Shared fixtures of the cross-package tests: tiny models built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from vllm_npu.testing import TinyModelSpec, build_tiny_model


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
