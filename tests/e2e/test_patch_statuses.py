"""Patch statuses in the main, engine-core and worker processes of a running engine."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from vllm_npu.patches import DECLARED_PATCHES, PatchStatus, manager
from vllm_npu.testing import TinyModelSpec

from .conftest import greedy_token_ids, vllm_engine


def _report(worker: Any) -> dict[str, Any]:
    """Runs inside the worker process (collective_rpc)."""
    import multiprocessing

    from vllm_npu.patches import manager

    return {
        "process": multiprocessing.current_process().name,
        "statuses": {pid: o.status.value for pid, o in manager().outcomes().items()},
    }


def _expected(processes: set[str]) -> dict[str, str]:
    return {
        patch.id: (
            PatchStatus.APPLIED.value
            if processes & set(patch.processes)
            else PatchStatus.NOT_APPLIED.value
        )
        for patch in DECLARED_PATCHES
    }


def test_statuses_match_the_declarations(tiny_model_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # to send _report
    model = tiny_model_dir(TinyModelSpec(arch="llama"))
    with vllm_engine(str(model)) as llm:
        assert greedy_token_ids(llm, ["Hello"], 4)[0]
        (remote,) = llm.collective_rpc(_report)

    main = {pid: o.status.value for pid, o in manager().outcomes().items()}
    assert multiprocessing.current_process().name == "MainProcess"
    assert main == _expected({"platform"})
    # One engine-core process that also hosts the (single) worker.
    assert remote["process"].startswith("EngineCore")
    assert remote["statuses"] == _expected({"engine_core", "worker"})
