"""Patch statuses in the main, engine-core and worker processes of a running engine."""

from __future__ import annotations

import multiprocessing
import sys
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet

from vllm_npu.patches import DECLARED_PATCHES, PatchStatus, manager
from vllm_npu.platform.versions import vllm_version
from vllm_npu.testing import TinyModelSpec

from .conftest import greedy_token_ids, vllm_engine


def _report(worker: Any) -> dict[str, Any]:
    """Runs inside the worker process (collective_rpc)."""
    import multiprocessing
    import sys

    from vllm_npu.patches import DECLARED_PATCHES, manager

    return {
        "process": multiprocessing.current_process().name,
        "statuses": {pid: o.status.value for pid, o in manager().outcomes().items()},
        "imported": sorted({p.module for p in DECLARED_PATCHES if p.module in sys.modules}),
    }


def _expected(processes: set[str], imported: set[str]) -> dict[str, str]:
    """Applied where the patch is for one of ``processes`` and its target module is
    imported; pending (applied lazily on import) where it is not imported yet; skipped
    where the installed vLLM is out of its range or its condition does not hold."""
    release = vllm_version().release

    def status(patch: Any) -> str:
        if not processes & set(patch.processes):
            return PatchStatus.NOT_APPLIED.value
        if release not in SpecifierSet(patch.vllm_versions):
            return PatchStatus.SKIPPED_OUT_OF_RANGE.value
        if patch.condition is not None and not patch.condition():
            return PatchStatus.NOT_NEEDED.value
        if patch.module in imported:
            return PatchStatus.APPLIED.value
        return PatchStatus.PENDING.value

    return {patch.id: status(patch) for patch in DECLARED_PATCHES}


def test_statuses_match_the_declarations(tiny_model_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # to send _report
    model = tiny_model_dir(TinyModelSpec(arch="llama"))
    with vllm_engine(str(model)) as llm:
        assert greedy_token_ids(llm, ["Hello"], 4)[0]
        (remote,) = llm.collective_rpc(_report)

    main = {pid: o.status.value for pid, o in manager().outcomes().items()}
    imported_here = {p.module for p in DECLARED_PATCHES if p.module in sys.modules}
    assert multiprocessing.current_process().name == "MainProcess"
    assert main == _expected({"platform"}, imported_here)
    # One engine-core process that also hosts the (single) worker.
    assert remote["process"].startswith("EngineCore")
    assert remote["statuses"] == _expected({"engine_core", "worker"}, set(remote["imported"]))
    # The multiprocessing executor never imports Ray's executor: its patches wait.
    ray_patches = [p for p in DECLARED_PATCHES if p.module.endswith("ray_executor_v2")]
    assert ray_patches
    assert all(remote["statuses"][p.id] == PatchStatus.PENDING.value for p in ray_patches)
