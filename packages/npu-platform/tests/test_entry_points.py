"""The doctor's static entry point check: what it catches without importing."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from vllm_npu.platform._entry_points import load_problem


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    package = tmp_path / "fake_plugin"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('package __init__ ran')\n")
    (package / "good.py").write_text(
        textwrap.dedent(
            """
            import json
            from . import helper
            from os import path as _path
            try:
                import not_a_module_anywhere
            except ImportError:
                pass

            def register():
                return "ok"

            CONSTANT: int = 1
            """
        )
    )
    (package / "helper.py").write_text("")
    (package / "broken_import.py").write_text("import not_a_module_anywhere\n\ndef f(): ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("fake_plugin")]:
        del sys.modules[name]


def _ep(value: str) -> EntryPoint:
    return EntryPoint(name="x", value=value, group="vllm.general_plugins")


@pytest.mark.parametrize("value", ["fake_plugin.good:register", "fake_plugin.good:CONSTANT"])
def test_resolves_without_running_any_module(plugin_dir: Path, value: str) -> None:
    assert load_problem(_ep(value)) is None
    assert "fake_plugin" not in sys.modules


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("fake_plugin.missing:register", "no module named 'fake_plugin.missing'"),
        ("fake_plugin.good:registr", "fake_plugin.good has no attribute 'registr'"),
        (
            "fake_plugin.broken_import:f",
            "fake_plugin.broken_import imports not_a_module_anywhere, which is not installed",
        ),
    ],
)
def test_static_problems(plugin_dir: Path, value: str, expected: str) -> None:
    assert load_problem(_ep(value)) == f"fails to load: {expected}"


def test_load_imports_for_real(plugin_dir: Path) -> None:
    problem = load_problem(_ep("fake_plugin.good:register"), load=True)
    assert problem == "fails to load: package __init__ ran"


def test_imported_module_is_checked_directly() -> None:
    assert load_problem(_ep("json:dumps")) is None
    assert load_problem(_ep("json:no_such")) == "fails to load: json has no attribute 'no_such'"
