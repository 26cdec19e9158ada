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
from packaging.version import Version

from vllm_npu.platform import PLATFORM_QUALNAME, _activation, activate, version_gate
from vllm_npu.platform.versions import VERSION_OVERRIDE_ENV

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def fake_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """Make package metadata say that vLLM ``version`` is installed.

    Writes a ``vllm-<version>.dist-info`` into a folder put first on
    ``sys.path``, which is where importlib.metadata looks first.
    """

    def install(version: str) -> Path:
        site = tmp_path / f"fake-vllm-{version}"
        dist_info = site / f"vllm-{version}.dist-info"
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n"
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
        ("0.27.1", "vllm-npu==0.28.*"),
        ("0.33.0", "vllm-npu==0.32.*"),
        ("1.0.0", "vllm-npu==0.32.*"),
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
    assert "supported: 0.28, 0.29, 0.30, 0.31, 0.32" in message
    assert suggested in message
    assert version_gate.ALLOW_UNSUPPORTED_ENV in message


def test_patch_release_of_a_supported_line_is_supported(gate_env, fake_vllm) -> None:
    fake_vllm("0.30.2")
    assert version_gate.check().allowed


def test_development_build_needs_to_be_told_its_release(
    gate_env, fake_vllm, caplog
) -> None:
    fake_vllm("0.33.0.dev12+gabcdef")
    with caplog.at_level(logging.ERROR, logger="vllm"), pytest.raises(SystemExit):
        activate()
    (message,) = _errors(caplog)
    assert "cannot tell which release" in message and VERSION_OVERRIDE_ENV in message
    gate_env.setenv(VERSION_OVERRIDE_ENV, "0.32.0")
    assert activate() == PLATFORM_QUALNAME


def test_maintainer_override_activates_with_a_warning(
    gate_env, fake_vllm, caplog
) -> None:
    fake_vllm("0.33.0")
    gate_env.setenv(version_gate.ALLOW_UNSUPPORTED_ENV, "1")
    with caplog.at_level(logging.WARNING, logger="vllm"):
        assert activate() == PLATFORM_QUALNAME
    assert not _errors(caplog)
    assert "trying anyway" in caplog.text


def test_inactive_plugin_says_nothing_about_versions(
    gate_env, fake_vllm, caplog
) -> None:
    gate_env.delenv("VLLM_NPU_DEVICE")
    fake_vllm("0.33.0")
    with caplog.at_level(logging.WARNING, logger="vllm"):
        assert activate() is None
    assert not caplog.records


def test_vllm_platform_resolution_shows_one_line_and_no_traceback(fake_vllm) -> None:
    """What a user sees: vLLM resolving its platform with an unsupported release.

    The line is formatted by vLLM's handler (on stdout) when vLLM configured
    logging already (0.28-0.31 on import), else printed plain by Python (0.32).
    """
    site = fake_vllm("0.33.0")
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
    assert "vLLM 0.33.0 is not supported" in ours[0]
    assert "Traceback" not in output
    assert result.returncode == 1
    assert not output.rstrip().endswith("Platform"), "vLLM went on without us"
