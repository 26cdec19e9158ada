"""Which vLLM release version gates believe is installed."""

from __future__ import annotations

import pytest
from packaging.version import Version

from vllm_npu.platform import versions


@pytest.mark.parametrize(
    ("installed", "release"),
    [
        ("0.32.0", "0.32.0"),
        ("0.30.0+cpu", "0.30.0"),
        ("0.30.1.dev12+gabc1234", "0.30.0"),
        ("0.31.2rc1", "0.31.1"),
        ("0.31.0.dev5", None),
        ("not a version", None),
    ],
)
def test_release_of(installed: str, release: str | None) -> None:
    expected = Version(release) if release else None
    assert versions.release_of(installed) == expected


def test_override_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(versions.VERSION_OVERRIDE_ENV, "0.30.0")
    found = versions.vllm_version()
    assert found.release == Version("0.30.0") and found.source == "override"


def test_bad_override_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(versions.VERSION_OVERRIDE_ENV, "latest")
    with pytest.raises(ValueError, match="VLLM_NPU_VLLM_VERSION='latest' is not a version"):
        versions.vllm_version()


def test_dev_build_is_treated_as_its_base_release(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(versions.VERSION_OVERRIDE_ENV, raising=False)
    monkeypatch.setattr(versions, "_installed", lambda: "0.30.1.dev3+g1234567")
    found = versions.vllm_version()
    assert found.release == Version("0.30.0")
    assert found.source == "base of a dev build"
