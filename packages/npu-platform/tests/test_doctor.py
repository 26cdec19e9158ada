"""``vllm-npu doctor`` on a host install: healthy, and each kind of problem exits 1."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vllm_npu.platform import doctor
from vllm_npu.platform.cli import main


def _doctor_json(capsys) -> tuple[int, dict]:
    code = main(["doctor", "--json"])
    return code, json.loads(capsys.readouterr().out)


def _problems(report: dict) -> list[str]:
    return [row["problem"] for row in report["rows"] if row["problem"]]


def test_healthy_host_install(clean_env, capsys) -> None:
    clean_env.setenv("VLLM_NPU_DEVICE", "host")
    code, report = _doctor_json(capsys)
    assert (code, report["healthy"], _problems(report)) == (0, True, [])
    items = {(row["section"], row["item"]): row["value"] for row in report["rows"]}
    assert items[("device", "backend")].startswith("host")
    assert items[("components", "attention backend")].startswith("npu = ")
    assert any(section == "patches" for section, _ in items)
    assert ("environment", "VLLM_NPU_DEVICE") in items


def test_table_output(clean_env, capsys) -> None:
    clean_env.setenv("VLLM_NPU_DEVICE", "host")
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "device: backend" in out and out.rstrip().endswith("healthy")


def test_missing_distribution(
    clean_env, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = doctor._installed
    monkeypatch.setattr(
        doctor,
        "_installed",
        lambda name: None if name == "vllm-npu-comm" else real(name),
    )
    code, report = _doctor_json(capsys)
    assert code == 1
    assert "missing: pip install vllm-npu-comm" in _problems(report)


def test_unknown_component(clean_env, capsys) -> None:
    clean_env.setenv("VLLM_NPU_COMMUNICATOR", "hccl-v2")
    code, report = _doctor_json(capsys)
    assert code == 1
    assert any("Unknown communicator 'hccl-v2'" in p for p in _problems(report))


def test_drifted_patch(clean_env, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm_npu.patches import declared

    first, *rest = declared.DECLARED_PATCHES
    monkeypatch.setattr(
        declared,
        "DECLARED_PATCHES",
        (dataclasses.replace(first, fingerprint="0" * 16), *rest),
    )
    monkeypatch.setattr(
        "vllm_npu.patches._doctor.DECLARED_PATCHES", declared.DECLARED_PATCHES
    )
    code, report = _doctor_json(capsys)
    assert code == 1
    assert any(p.startswith(f"patch {first.id}:") for p in _problems(report))


def test_vllm_target_device_cpu_is_flagged(clean_env, capsys) -> None:
    clean_env.setenv("VLLM_NPU_DEVICE", "host")
    clean_env.setenv("VLLM_TARGET_DEVICE", "cpu")
    code, report = _doctor_json(capsys)
    assert code == 1
    assert any("skip every platform plugin" in p for p in _problems(report))


def test_torch_npu_without_cann_is_recognised_before_importing_torch(
    tmp_path: Path,
) -> None:
    """A torch_npu whose backend auto-load fails the way it does without CANN."""
    site = tmp_path / "site"
    package = site / "torch_npu"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        textwrap.dedent("""
        def _autoload():
            raise ImportError("libhccl.so: cannot open shared object file")
    """)
    )
    dist_info = site / "torch_npu-2.13.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: torch-npu\nVersion: 2.13.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[torch.backends]\ntorch_npu = torch_npu:_autoload\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("TORCH_DEVICE_BACKEND_AUTOLOAD", None)
    probe = subprocess.run(
        [sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True
    )
    assert probe.returncode != 0 and "torch_npu" in probe.stderr, (
        "the fake does not break torch"
    )

    result = subprocess.run(
        [sys.executable, "-m", "vllm_npu.platform.cli", "doctor", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    report = json.loads(result.stdout)
    problem = next(
        row["problem"]
        for row in report["rows"]
        if row["item"] == "torch_npu" and row["problem"]
    )
    assert "install CANN" in problem and "TORCH_DEVICE_BACKEND_AUTOLOAD=0" in problem


def test_unsupported_vllm_version(
    clean_env, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_NPU_VLLM_VERSION", "0.27.0")
    monkeypatch.delenv("VLLM_NPU_ALLOW_UNSUPPORTED_VLLM", raising=False)
    code, report = _doctor_json(capsys)
    assert code == 1
    supported = next(row for row in report["rows"] if row["item"] == "supported")
    assert supported["value"] == "no"
    assert "0.27.0" in supported["problem"] and "not supported" in supported["problem"]


def test_supported_combination_is_named(clean_env, capsys) -> None:
    clean_env.setenv("VLLM_NPU_DEVICE", "host")
    _, report = _doctor_json(capsys)
    supported = next(row for row in report["rows"] if row["item"] == "supported")
    assert supported["value"].startswith("yes: vLLM 0.") and not supported["problem"]


def _rows(report: dict) -> dict[str, dict]:
    return {row["item"]: row for row in report["rows"] if row["section"] == "device"}


def test_nnal_row_names_the_fix(clean_env, capsys) -> None:
    from vllm_npu.testing import standin

    clean_env.setenv("VLLM_NPU_DEVICE", "host")
    clean_env.setenv("VLLM_NPU_STANDIN_NNAL", "missing")
    with standin.installed():
        code, report = _doctor_json(capsys)
    row = _rows(report)["NNAL (ATB ops)"]
    assert (code, row["value"]) == (1, "not loaded")
    assert "source <NNAL install path>/atb/set_env.sh" in row["problem"]
    assert _rows(report)["torch_npu pairing"]["problem"] == ""


def test_nnal_row_when_nnal_loads(clean_env, capsys) -> None:
    from vllm_npu.testing import standin

    clean_env.setenv("VLLM_NPU_DEVICE", "host")
    clean_env.delenv("VLLM_NPU_STANDIN_NNAL", raising=False)
    with standin.installed():
        _, report = _doctor_json(capsys)
    assert _rows(report)["NNAL (ATB ops)"] == {
        "section": "device", "item": "NNAL (ATB ops)", "value": "loaded", "problem": ""
    }
