"""Worker thread count on the host backend."""

from __future__ import annotations

import os

import pytest

from vllm_npu.worker._threads import HOST_THREADS_ENV, host_thread_count


@pytest.fixture
def no_thread_settings(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(HOST_THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    return monkeypatch


def test_cores_are_shared_with_the_front_end(no_thread_settings) -> None:
    no_thread_settings.setattr(os, "sched_getaffinity", lambda pid: set(range(2)))
    assert host_thread_count(local_world_size=1) == 1
    no_thread_settings.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert host_thread_count(local_world_size=1) == 8
    assert host_thread_count(local_world_size=3) == 4
    assert host_thread_count(local_world_size=40) == 1


def test_explicit_omp_setting_is_respected(no_thread_settings) -> None:
    no_thread_settings.setenv("OMP_NUM_THREADS", "3")
    assert host_thread_count(local_world_size=1) is None


def test_our_variable_wins(no_thread_settings) -> None:
    no_thread_settings.setenv("OMP_NUM_THREADS", "3")
    no_thread_settings.setenv(HOST_THREADS_ENV, "2")
    assert host_thread_count(local_world_size=1) == 2


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_bad_thread_count_is_a_clear_error(no_thread_settings, value: str) -> None:
    no_thread_settings.setenv(HOST_THREADS_ENV, value)
    with pytest.raises(ValueError, match=HOST_THREADS_ENV):
        host_thread_count(local_world_size=1)
