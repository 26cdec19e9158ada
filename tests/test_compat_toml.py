"""compat.toml is well formed, and what is generated from it agrees with it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import tomllib
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
RELEASES = tomllib.loads((ROOT / "compat.toml").read_text())["vllm"]
COMPONENTS = {
    "vllm-npu-platform": "npu-platform",
    "vllm-npu-worker": "npu-worker",
    "vllm-npu-attention": "npu-attention",
    "vllm-npu-comm": "npu-comm",
    "vllm-npu-patches": "npu-patches",
}


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_release_says_what_goes_with_it() -> None:
    assert RELEASES
    for release, entry in RELEASES.items():
        assert str(Version(release)) == release, release
        required = {"vllm-npu", "torch", "torch-npu", "components"}
        assert required <= set(entry) <= required | {"requires"}, release
        assert all(isinstance(r, str) for r in entry.get("requires", [])), release
        assert set(entry["components"]) == set(COMPONENTS), release
        line = Version(release).release[:2]
        assert Version(entry["vllm-npu"]).release[:2] == line, (
            f"vllm-npu {entry['vllm-npu']} must follow vLLM {release}'s line"
        )


def test_newest_release_pins_the_workspace_components() -> None:
    newest = RELEASES[max(RELEASES, key=Version)]
    for dist, folder in COMPONENTS.items():
        project = tomllib.loads(
            (ROOT / "packages" / folder / "pyproject.toml").read_text()
        )
        assert newest["components"][dist] == project["project"]["version"], dist


def test_readme_table_agrees_with_compat_toml() -> None:
    table = _script("compat_table")
    expected = table.render((ROOT / "compat.toml").read_text())
    assert table.current((ROOT / "README.md").read_text()) == expected, (
        "README.md's version table disagrees with compat.toml; "
        "run python scripts/compat_table.py"
    )
