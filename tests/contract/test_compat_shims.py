"""Each ``_compat`` shim is chosen exactly on the vLLM releases that need it.

Shims detect features, never versions; this table says which releases we
know to need each one, so that a detection gone wrong fails here, and a shim
that no supported release needs any more fails as dead code.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import tomllib
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from vllm_npu.platform.versions import vllm_version

ROOT = Path(__file__).resolve().parents[2]
SUPPORTED = [
    Version(v) for v in tomllib.loads((ROOT / "compat.toml").read_text())["vllm"]
]

SHIMS = {
    # (module, name the package uses, the shim chosen where needed): releases
    ("vllm_npu.attention._compat", "KVCacheShape", "_ShapeFromBackend"): "<0.29",
    ("vllm_npu.worker._compat", "TritonReplacements", "_KernelsFromRunner"): "<0.31",
}


def _needs_kernel_blocks() -> bool:
    from vllm.v1.worker import block_table

    from vllm_npu.platform import _compat

    holder = getattr(block_table, "ComputeSlotMappingKernel", None)
    kernel = holder.kernel if holder else block_table._compute_slot_mapping_kernel
    return "block_size" in _compat._parameter_names(kernel)


@pytest.mark.parametrize(("shim", "releases"), SHIMS.items(), ids=lambda v: str(v))
def test_shim_is_chosen_where_needed(shim: tuple[str, str, str], releases: str) -> None:
    module, used, chosen = shim
    compat = importlib.import_module(module)
    release = vllm_version().release
    expected = release in SpecifierSet(releases)
    assert (getattr(compat, used) is getattr(compat, chosen)) == expected, (
        f"{module}.{used}: {chosen} should be used exactly on vLLM {releases}"
    )


def test_slot_mapping_kernel_form_is_chosen_where_needed() -> None:
    release = vllm_version().release
    assert _needs_kernel_blocks() == (release in SpecifierSet("<0.32"))


def test_rejection_sampler_kernels_are_installed_where_this_release_launches_them() -> None:
    """vLLM's kernel dispatcher from 0.31; the module and its warm-up owners before."""
    from vllm_npu.platform import _compat

    release = vllm_version().release
    expected = "module attributes" if release in SpecifierSet("<0.31") else "dispatcher"
    assert _compat.register_rejection_sampler_kernels() == expected


@pytest.mark.parametrize("releases", [*SHIMS.values(), "<0.32"])
def test_every_shim_serves_a_supported_release(releases: str) -> None:
    assert any(release in SpecifierSet(releases) for release in SUPPORTED), (
        f"no supported vLLM is {releases} any more: delete the shim for it"
    )
