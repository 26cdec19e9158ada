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
    assert items[("components", "MLA attention backend")].startswith("npu-mla = ")
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
    standin.deactivate()  # a fresh import reads the NNAL state
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
    standin.deactivate()
    with standin.installed():
        _, report = _doctor_json(capsys)
    assert _rows(report)["NNAL (ATB ops)"] == {
        "section": "device", "item": "NNAL (ATB ops)", "value": "loaded", "problem": ""
    }


def _fake_distribution(site: Path, name: str, version: str, requires: list[str],
                       module_source: str = "") -> None:
    """What pip leaves for ``name`` (metadata and an importable module)."""
    dist_info = site / f"{name}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    (dist_info / "METADATA").write_text("\n".join(lines) + "\n")
    (site / name).mkdir()
    (site / name / "__init__.py").write_text(module_source)


def _mismatched_build(torch_version: str) -> str:
    """A torchvision version whose build tag is not the installed torch's."""
    from packaging.version import Version

    return "0.28.0" if Version(torch_version).local else "0.28.0+cpu"


def test_selective_install_with_another_attention_backend_is_healthy(
    clean_env, capsys, install_distribution, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A researcher's backend selected and installed: vllm-npu-attention is not needed."""
    install_distribution(
        "researcher-attention",
        {"vllm_npu.attention_backends": {"researcher": "researcher_attention:Backend"}},
        {"researcher_attention.py": "class Backend:\n    pass\n"},
    )
    clean_env.setenv("VLLM_NPU_DEVICE", "host")
    clean_env.setenv("VLLM_NPU_ATTENTION_BACKEND", "researcher")
    real = doctor._installed
    monkeypatch.setattr(
        doctor, "_installed", lambda name: None if name == "vllm-npu-attention" else real(name)
    )
    code, report = _doctor_json(capsys)
    assert (code, _problems(report)) == (0, [])
    items = {(row["section"], row["item"]): row["value"] for row in report["rows"]}
    assert items[("distributions", "vllm-npu-attention")] == (
        "not installed (not needed: attention backend 'researcher' selected by "
        "VLLM_NPU_ATTENTION_BACKEND)"
    )
    assert items[("components", "attention backend")] == (
        "researcher = researcher_attention:Backend (from researcher-attention 1.0)"
    )
    assert "(from vllm-npu-comm " in items[("components", "communicator")]


def test_missing_default_attention_backend_is_a_problem(
    clean_env, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = doctor._installed
    monkeypatch.setattr(
        doctor, "_installed", lambda name: None if name == "vllm-npu-attention" else real(name)
    )
    code, report = _doctor_json(capsys)
    assert code == 1
    assert "missing: pip install vllm-npu-attention" in _problems(report)


def test_torchvision_built_for_another_torch_is_named(
    clean_env, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch_version = doctor._installed("torch")
    site = tmp_path / "site"
    version = _mismatched_build(torch_version)
    base = torch_version.split("+")[0]
    _fake_distribution(site, "torchvision", version, [f"torch=={base}", "numpy"])
    monkeypatch.syspath_prepend(str(site))
    clean_env.setenv("VLLM_NPU_DEVICE", "host")
    code, report = _doctor_json(capsys)
    assert code == 1
    (problem,) = [p for p in _problems(report) if "torchvision" in p]
    assert problem.startswith(f"torchvision {version} is ")
    assert f"installed torch is {torch_version}" in problem
    assert "pip uninstall -y torchvision" in problem


def test_torchvision_pinning_another_torch_release_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vllm_npu.platform import _torch_companions

    torch_version = doctor._installed("torch")
    local = torch_version.partition("+")[2]
    site = tmp_path / "site"
    version = f"0.1.0+{local}" if local else "0.1.0"
    _fake_distribution(site, "torchvision", version, ["torch==1.0.0"])
    monkeypatch.syspath_prepend(str(site))
    (finding,) = [f for f in _torch_companions.findings(torch_version) if f.name == "torchvision"]
    assert f"requires torch==1.0.0, installed is {torch_version}" in finding.problem


def test_matching_torchvision_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm_npu.platform import _torch_companions

    torch_version = doctor._installed("torch")
    local = torch_version.partition("+")[2]
    site = tmp_path / "site"
    version = f"0.28.0+{local}" if local else "0.28.0"
    _fake_distribution(site, "torchvision", version, [f"torch=={torch_version.split('+')[0]}"])
    monkeypatch.syspath_prepend(str(site))
    (finding,) = [f for f in _torch_companions.findings(torch_version) if f.name == "torchvision"]
    assert finding.problem == ""


def test_torchcodec_that_does_not_import_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchcodec names no torch build: it is imported alone, in a subprocess."""
    from vllm_npu.platform import _torch_companions

    site = tmp_path / "site"
    _fake_distribution(
        site, "torchcodec", "0.9.0", [],
        "raise OSError('Could not load this library: libtorchcodec_core8.so')\n",
    )
    monkeypatch.syspath_prepend(str(site))
    (finding,) = [
        f for f in _torch_companions.findings(doctor._installed("torch"))
        if f.name == "torchcodec"
    ]
    assert finding.problem.startswith("torchcodec 0.9.0 does not import against this torch")
    assert "libtorchcodec_core8.so" in finding.problem


def test_unusable_ascend_backend_is_a_problem_where_torch_npu_is_installed(
    clean_env, capsys
) -> None:
    from vllm_npu.testing import standin

    clean_env.setenv("VLLM_NPU_STANDIN_NNAL", "missing")
    standin.deactivate()  # a fresh import reads the NNAL state
    with standin.installed():
        code, report = _doctor_json(capsys)
    row = _rows(report)["backend"]
    assert code == 1 and row["value"].startswith("none (plugin inactive)")
    assert "cannot load NNAL" in row["problem"]


def test_selective_install_needs_no_mla_backend(
    clean_env, capsys, install_distribution, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without vllm-npu-attention and its MLA backend, only MLA models lack one."""
    install_distribution(
        "researcher-attention",
        {"vllm_npu.attention_backends": {"researcher": "researcher_attention:Backend"}},
        {"researcher_attention.py": "class Backend:\n    pass\n"},
    )
    clean_env.setenv("VLLM_NPU_DEVICE", "host")
    clean_env.setenv("VLLM_NPU_ATTENTION_BACKEND", "researcher")
    real = doctor._installed
    monkeypatch.setattr(
        doctor, "_installed", lambda name: None if name == "vllm-npu-attention" else real(name)
    )
    monkeypatch.setattr(
        doctor.discovery, "registered",
        lambda kind, real=doctor.discovery.registered: {
            name: ep for name, ep in real(kind).items()
            if not (ep.dist and ep.dist.name == "vllm-npu-attention")
        },
    )
    code, report = _doctor_json(capsys)
    assert (code, _problems(report)) == (0, [])
    mla = next(row for row in report["rows"] if row["item"] == "MLA attention backend")
    assert mla["value"].startswith("none, needed only by some models: No MLA attention backend")
