"""The version gate refuses vLLM releases compat.toml does not list, in one line."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import tomllib
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from vllm_npu.platform import PLATFORM_QUALNAME, _activation, activate, version_gate
from vllm_npu.platform.versions import VERSION_OVERRIDE_ENV, VllmVersion

ROOT = Path(__file__).resolve().parents[3]
COMPAT = tomllib.loads((ROOT / "compat.toml").read_text())["vllm"]
RELEASES = sorted(COMPAT, key=Version)
LINES = [".".join(release.split(".")[:2]) for release in RELEASES]
OLDEST, NEWEST = LINES[0], LINES[-1]
NEXT_MINOR = f"{Version(NEWEST).major}.{Version(NEWEST).minor + 1}.0"
"""The first vLLM release line after the newest supported one."""


@pytest.fixture
def fake_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """Make package metadata say that vLLM ``version`` (and ``torch``) is installed.

    Writes a ``vllm-<version>.dist-info`` into a folder put first on
    ``sys.path``, which is where importlib.metadata looks first.
    """

    def install(version: str, torch: str | None = None) -> Path:
        site = tmp_path / f"fake-vllm-{version}"
        for name, release in (("vllm", version), ("torch", torch)):
            if release is None:
                continue
            dist_info = site / f"{name}-{release}.dist-info"
            dist_info.mkdir(parents=True)
            (dist_info / "METADATA").write_text(
                f"Metadata-Version: 2.1\nName: {name}\nVersion: {release}\n"
            )
        monkeypatch.syspath_prepend(str(site))
        return site

    return install


@pytest.fixture
def gate_env(clean_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The host backend selected, no gate override, nothing reported yet."""
    clean_env.setenv("VLLM_NPU_DEVICE", "host")
    for name in (version_gate.ALLOW_UNSUPPORTED_ENV, VERSION_OVERRIDE_ENV):
        clean_env.delenv(name, raising=False)
    _activation.reported.clear()
    yield clean_env
    _activation.reported.clear()


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_installed_copy_is_the_repository_compat_toml() -> None:
    releases = tomllib.loads((ROOT / "compat.toml").read_text())["vllm"]
    shipped = version_gate.supported_releases()
    assert [str(p.vllm) for p in shipped] == sorted(releases, key=Version)
    for pairing in shipped:
        entry = releases[str(pairing.vllm)]
        assert pairing.vllm_npu == entry["vllm-npu"]
        assert dict(pairing.components) == entry["components"]


def test_installed_vllm_is_supported(gate_env) -> None:
    assert version_gate.check().allowed
    assert activate() == PLATFORM_QUALNAME


@pytest.mark.parametrize(
    ("installed", "suggested"),
    [
        ("0.27.1", f"vllm-npu=={OLDEST}.*"),
        (NEXT_MINOR, f"vllm-npu=={NEWEST}.*"),
        ("1.0.0", f"vllm-npu=={NEWEST}.*"),
    ],
)
def test_out_of_range_vllm_is_one_error_line(
    gate_env, fake_vllm, caplog, installed: str, suggested: str
) -> None:
    fake_vllm(installed)
    with (
        caplog.at_level(logging.DEBUG, logger="vllm"),
        pytest.raises(SystemExit) as raised,
    ):
        activate()
    assert raised.value.code == 1
    errors = _errors(caplog)
    assert len(errors) == 1, errors
    message = errors[0]
    assert "\n" not in message
    assert f"vLLM {installed} is not supported" in message
    assert f"supported: {', '.join(LINES)})" in message
    assert suggested in message
    assert version_gate.ALLOW_UNSUPPORTED_ENV in message


def test_patch_release_of_a_supported_line_is_supported(gate_env, fake_vllm) -> None:
    fake_vllm("0.30.2", torch=COMPAT["0.30.0"]["torch"])
    assert version_gate.check().allowed


def _release(version: str) -> VllmVersion:
    return VllmVersion(version, Version(version), "release")


def test_newest_release_is_accepted_and_the_next_minor_refused_in_one_line(gate_env) -> None:
    newest = RELEASES[-1]
    assert version_gate.check(_release(newest), COMPAT[newest]["torch"]).allowed
    refused = version_gate.check(_release(NEXT_MINOR), COMPAT[newest]["torch"])
    assert not refused.allowed
    assert refused.message is not None and "\n" not in refused.message
    assert f"vLLM {NEXT_MINOR} is not supported" in refused.message


@pytest.mark.parametrize("release", RELEASES)
def test_a_torch_compat_toml_does_not_pair_is_one_line_naming_the_right_one(
    gate_env, release: str
) -> None:
    wanted = COMPAT[release]["torch"]
    other = next(
        (entry["torch"] for entry in COMPAT.values() if entry["torch"] != wanted), "2.12.0"
    )
    verdict = version_gate.check(_release(release), f"{other}+cpu")
    assert not verdict.allowed
    assert verdict.message is not None and "\n" not in verdict.message
    assert f"goes with torch {wanted}" in verdict.message
    assert f"torch {other}+cpu is installed" in verdict.message
    assert f"pip install 'torch=={wanted}'" in verdict.message


def test_a_torch_build_tag_does_not_count(gate_env) -> None:
    newest = RELEASES[-1]
    torch = COMPAT[newest]["torch"]
    for build in (torch, f"{torch}+cpu", f"{torch}+cu130"):
        assert version_gate.check(_release(newest), build).allowed, build


def test_a_mismatched_torch_stops_activation_in_one_line(gate_env, fake_vllm, caplog) -> None:
    fake_vllm("0.33.0", torch="2.13.0+cpu")
    with caplog.at_level(logging.ERROR, logger="vllm"), pytest.raises(SystemExit):
        activate()
    (message,) = _errors(caplog)
    assert "vLLM 0.33.0 goes with torch 2.14.0" in message


def test_development_build_needs_to_be_told_its_release(
    gate_env, fake_vllm, caplog
) -> None:
    fake_vllm(f"{NEXT_MINOR}.dev12+gabcdef", torch=COMPAT[RELEASES[-1]]["torch"])
    with caplog.at_level(logging.ERROR, logger="vllm"), pytest.raises(SystemExit):
        activate()
    (message,) = _errors(caplog)
    assert "cannot tell which release" in message and VERSION_OVERRIDE_ENV in message
    gate_env.setenv(VERSION_OVERRIDE_ENV, RELEASES[-1])
    assert activate() == PLATFORM_QUALNAME


def test_maintainer_override_activates_with_a_warning(
    gate_env, fake_vllm, caplog
) -> None:
    fake_vllm(NEXT_MINOR)
    gate_env.setenv(version_gate.ALLOW_UNSUPPORTED_ENV, "1")
    with caplog.at_level(logging.WARNING, logger="vllm"):
        assert activate() == PLATFORM_QUALNAME
    assert not _errors(caplog)
    assert "trying anyway" in caplog.text


def test_inactive_plugin_says_nothing_about_versions(
    gate_env, fake_vllm, caplog
) -> None:
    gate_env.delenv("VLLM_NPU_DEVICE")
    fake_vllm(NEXT_MINOR)
    with caplog.at_level(logging.WARNING, logger="vllm"):
        assert activate() is None
    assert not caplog.records


def test_vllm_platform_resolution_shows_one_line_and_no_traceback(fake_vllm) -> None:
    """What a user sees: vLLM resolving its platform with an unsupported release.

    The line is formatted by vLLM's handler (on stdout) when vLLM configured
    logging already (0.28-0.31 on import), else printed plain by Python (0.32).
    """
    site = fake_vllm(NEXT_MINOR)
    env = {
        **os.environ,
        "VLLM_NPU_DEVICE": "host",
        "PYTHONPATH": os.pathsep.join([str(site), *sys.path]),
    }
    env.pop(version_gate.ALLOW_UNSUPPORTED_ENV, None)
    env.pop(VERSION_OVERRIDE_ENV, None)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import vllm.platforms as p; print(type(p.current_platform).__name__)",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    ours = [line for line in output.splitlines() if "vllm-npu:" in line]
    assert len(ours) == 1, output
    assert f"vLLM {NEXT_MINOR} is not supported" in ours[0]
    assert "Traceback" not in output
    assert result.returncode == 1
    assert not output.rstrip().endswith("Platform"), "vLLM went on without us"


def test_supported_specifier_covers_exactly_the_supported_lines() -> None:
    specifier = SpecifierSet(version_gate.supported_vllm_specifier())
    for line in LINES:
        assert f"{line}.0" in specifier and f"{line}.7" in specifier
    assert NEXT_MINOR not in specifier
    assert f"{Version(OLDEST).major}.{Version(OLDEST).minor - 1}.9" not in specifier


def test_supported_specifier_leaves_out_a_skipped_minor_release() -> None:
    pairings = version_gate.parse_compat(
        "\n".join(
            f'[vllm."{v}"]\nvllm-npu = "{v}"\ntorch = "2.13.0"\ntorch-npu = "2.13.0"\n'
            "components = {}\n"
            for v in ("0.28.0", "0.30.0")
        )
    )
    assert version_gate.supported_vllm_specifier(pairings) == ">=0.28,<0.31,!=0.29.*"


def test_cuda_python_12_over_cuda_bindings_13_is_one_line(gate_env, tmp_path, monkeypatch) -> None:
    """What the resolver picked here for vLLM 0.33: cuda-python 12.6.2.post1 (a whole
    wheel with cuda/bindings) next to cuda-bindings 13.5.0."""
    site = tmp_path / "site"
    for name, release, files in (
        ("cuda_python", "12.6.2.post1", ["cuda/bindings/runtime.cpython-311-x86_64-linux-gnu.so"]),
        ("cuda_bindings", "13.5.0", ["cuda/bindings/runtime.cpython-311-x86_64-linux-gnu.so"]),
    ):
        dist_info = site / f"{name}-{release}.dist-info"
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {release}\n"
        )
        (dist_info / "RECORD").write_text("".join(f"{path},,\n" for path in files))
    monkeypatch.syspath_prepend(str(site))
    newest = RELEASES[-1]
    verdict = version_gate.check(_release(newest), COMPAT[newest]["torch"])
    assert not verdict.allowed
    assert verdict.message is not None and "\n" not in verdict.message
    assert "cuda-python 12.6.2.post1 and cuda-bindings 13.5.0" in verdict.message
    assert "pip install 'cuda-python>=13'" in verdict.message


def test_installed_cuda_python_goes_with_its_bindings() -> None:
    assert version_gate._cuda_python_problem() is None
