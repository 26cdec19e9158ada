"""The workspace builds one wheel per distribution, laid out as a PEP 420 namespace."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = {
    "vllm_npu_platform": "platform",
    "vllm_npu_worker": "worker",
    "vllm_npu_attention": "attention",
    "vllm_npu_comm": "comm",
    "vllm_npu_patches": "patches",
}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, zipfile.ZipFile]:
    uv = shutil.which("uv")
    assert uv, "uv is needed to build the wheels (./dev installs it)"
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [uv, "build", "--all-packages", "--wheel", "-q", "-o", str(out)],
        cwd=ROOT,
        check=True,
    )
    return {path.name.split("-")[0]: zipfile.ZipFile(path) for path in out.glob("*.whl")}


def test_every_distribution_builds(wheels) -> None:
    assert set(COMPONENTS) | {"vllm_npu"} <= set(wheels)


@pytest.mark.parametrize(("dist", "package"), sorted(COMPONENTS.items()))
def test_component_wheel_layout(wheels, dist: str, package: str) -> None:
    names = wheels[dist].namelist()
    assert "vllm_npu/__init__.py" not in names, "vllm_npu is a namespace package"
    assert f"vllm_npu/{package}/__init__.py" in names
    assert f"vllm_npu/{package}/py.typed" in names
    others = set(COMPONENTS.values()) - {package}
    assert not any(
        name.startswith(f"vllm_npu/{other}/") for name in names for other in others
    ), "one import package per wheel"


def test_meta_package_pins_the_components_exactly(wheels) -> None:
    meta = wheels["vllm_npu"]
    metadata = next(n for n in meta.namelist() if n.endswith("METADATA"))
    requires = [
        line.split(":", 1)[1].strip()
        for line in meta.read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]
    for dist in COMPONENTS:
        name = dist.replace("_", "-")
        assert any(req.startswith(f"{name}==") for req in requires), (name, requires)
    assert any(req.startswith("vllm==") for req in requires)
    assert not any(n.endswith(".py") for n in meta.namelist())
