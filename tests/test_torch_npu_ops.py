"""The generated list of torch_npu ops is current (read from committed files only: no
wheel, no network), and the stand-in has every op and ``torch.npu`` call the runtime
packages make, with the keywords they pass. Conformance to the real torch_npu:
tests/test_torch_npu_conformance.py."""

from __future__ import annotations

import importlib.util
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_npu.testing.standin import installed

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "torch_npu_ops.py"


def _script():
    spec = importlib.util.spec_from_file_location("torch_npu_ops", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


USES = _script().collect()


def test_generated_list_is_current(tmp_path: Path) -> None:
    offline = {
        **os.environ,
        "VLLM_NPU_TORCH_NPU_CACHE": str(tmp_path / "empty-cache"),
        "VLLM_NPU_PIP": "false",  # a pip that always fails: the check must not need it
    }
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, env=offline
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "empty-cache").exists()


def test_every_op_used_has_its_real_schema_in_the_docs() -> None:
    text = (ROOT / "docs" / "torch_npu_ops.md").read_text()
    for name in USES:
        section = text.split(f"## `{name}`\n", 1)[1].split("\n## ", 1)[0]
        assert "Real schema" in section or "Real: `torch.npu." in section, name


def test_the_kernels_and_custom_ops_are_found() -> None:
    expected = {
        "torch_npu._npu_reshape_and_cache",
        "torch_npu._npu_paged_attention",
        "torch_npu.npu_fused_infer_attention_score",
        "torch_npu.npu_rms_norm",
        "torch_npu.npu_add_rms_norm",
        "torch_npu.npu_rotary_mul",
        "torch_npu.npu_swiglu",
        "torch.npu.mem_get_info",
        "torch.npu.synchronize",
    }
    assert expected <= set(USES)


@pytest.mark.parametrize("name", sorted(USES))
def test_standin_provides_it_with_these_keywords(name: str) -> None:
    module_name, attribute = name.rsplit(".", 1)
    with installed() as torch_npu:
        import torch

        owner = torch.npu if module_name == "torch.npu" else torch_npu
        for submodule in module_name.split(".")[1:] if owner is torch_npu else ():
            owner = getattr(owner, submodule, None)
        assert hasattr(owner, attribute), f"the stand-in lacks {name}"
        target = getattr(owner, attribute)
        if USES[name].keywords:
            parameters = inspect.signature(target).parameters
            missing = USES[name].keywords - set(parameters)
            assert not missing, f"{name} does not take {sorted(missing)}"
