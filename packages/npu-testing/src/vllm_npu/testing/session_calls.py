"""A pytest plugin (registered by the root conftest.py) that records the torch_npu
stand-in's calls over a whole test session, so that the conformance test
(tests/test_torch_npu_conformance.py) checks the calls the session's Ascend tests
made instead of running those tests a second time.

When the session starts, unless ``VLLM_NPU_STANDIN_CALL_SPECS`` is set already, it
points at a file of the session: the stand-in appends each distinct call there, in
this process and in the processes it starts. Tests marked ``checks_recorded_calls``
run after all others. ``complete_recording(config, modules)`` is that file when every
test of those modules (end-to-end ones aside) has run in this session, else None.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CALL_SPECS_ENV = "VLLM_NPU_STANDIN_CALL_SPECS"
MARKER = "checks_recorded_calls"
UNRECORDED_MARKER = "e2e"
"""Tests that may be left out of a session without making its recording incomplete."""


@dataclass
class _Recording:
    path: Path | None
    collected: set[Path] = field(default_factory=set)
    selected: dict[Path, set[str]] = field(default_factory=dict)
    incomplete: set[Path] = field(default_factory=set)
    finished: set[str] = field(default_factory=set)


_STATE = pytest.StashKey[_Recording]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: reads the stand-in calls the session recorded; runs last"
    )
    path = None
    if not os.environ.get(CALL_SPECS_ENV):
        path = Path(tempfile.mkdtemp(prefix="vllm-npu-standin-calls-")) / "calls.jsonl"
        os.environ[CALL_SPECS_ENV] = str(path)
    config.stash[_STATE] = _Recording(path)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None and state.path is not None:
        if os.environ.get(CALL_SPECS_ENV) == str(state.path):
            del os.environ[CALL_SPECS_ENV]
        shutil.rmtree(state.path.parent, ignore_errors=True)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker(MARKER) is not None)
    state = config.stash[_STATE]
    for item in items:
        module = Path(item.path).resolve()
        state.collected.add(module)
        state.selected.setdefault(module, set()).add(item.nodeid)


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:
        state, module = item.config.stash[_STATE], Path(item.path).resolve()
        state.collected.add(module)
        if item.get_closest_marker(UNRECORDED_MARKER) is None:
            state.incomplete.add(module)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    yield
    item.config.stash[_STATE].finished.add(item.nodeid)


def complete_recording(config: pytest.Config, modules: list[Path]) -> Path | None:
    """The session's call file, if every test of ``modules`` (but end-to-end ones) ran."""
    state = config.stash.get(_STATE, None)
    if state is None or state.path is None:
        return None
    for module in (m.resolve() for m in modules):
        if module not in state.collected or module in state.incomplete:
            return None
        if not state.selected.get(module, set()) <= state.finished:
            return None
    return state.path
