"""Fixtures for platform tests: a clean environment and installable fake distributions."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from vllm_npu.platform import _env


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No VLLM_NPU_* variable set."""
    for name in (
        _env.DEVICE,
        _env.ATTENTION_BACKEND,
        _env.MLA_ATTENTION_BACKEND,
        _env.WORKER,
        _env.COMMUNICATOR,
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def install_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Path]:
    """Put a real (tiny) distribution with entry points on sys.path.

    ``install_distribution("my-dist", {"group": {"name": "module:attr"}},
    {"module.py": "source"})`` writes ``module.py`` and a ``.dist-info`` folder,
    exactly what pip would leave, so importlib.metadata finds the entry points.
    """

    def install(
        name: str,
        entry_points: dict[str, dict[str, str]],
        modules: dict[str, str] | None = None,
    ) -> Path:
        site = tmp_path / f"site-{name}"
        dist_info = site / f"{name.replace('-', '_')}-1.0.dist-info"
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
        )
        lines = []
        for group, items in entry_points.items():
            lines.append(f"[{group}]")
            lines.extend(f"{key} = {value}" for key, value in items.items())
        (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        for filename, source in (modules or {}).items():
            (site / filename).write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(site))
        return site

    yield install
    for module in [m for m in sys.modules if m.startswith("researcher_")]:
        del sys.modules[module]
