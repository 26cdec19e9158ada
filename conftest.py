"""Settings every test process needs before vLLM resolves its platform, and the
suite's two tiers.

The whole suite runs on the host backend, offline, with one OpenMP thread
per process (2-core machines). Tests marked ``extended`` (more engines of a kind the
default run already starts, such as further multi-rank or Ascend-path engines) run
only with ``--extended``: ``./dev test`` stays the fast default run, and CI runs the
extended tier after it (``./dev test --extended -m extended``).
"""

import os

import pytest

pytest_plugins = [
    "vllm_npu.testing.session_calls",  # stand-in calls for the conformance test
    "vllm_npu.testing.support_marks",  # the support mark's vocabulary (support matrix)
]

os.environ.setdefault("VLLM_NPU_DEVICE", "host")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("VLLM_NPU_HOST_KV_CACHE_GB", "0.25")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--extended",
        action="store_true",
        help="also run the tests marked extended (CI's second tier)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--extended"):
        return
    extended = [item for item in items if item.get_closest_marker("extended")]
    if extended:
        config.hook.pytest_deselected(items=extended)
        items[:] = [item for item in items if not item.get_closest_marker("extended")]
