"""``vllm-npu patches``: list, check (drift makes it fail) and the generated docs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from vllm_npu.patches import declared
from vllm_npu.patches._docs import markdown
from vllm_npu.platform.cli import main
from vllm_npu.platform.versions import vllm_version

DOCS = Path(__file__).resolve().parents[3] / "docs" / "patches.md"


def test_list_json_reports_every_patch(capsys) -> None:
    assert main(["patches", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["id"] for row in rows] == [p.id for p in declared.DECLARED_PATCHES]
    release = vllm_version().release
    assert [row["status"] for row in rows] == [
        "applied" if release in SpecifierSet(p.vllm_versions) else "skipped-out-of-range"
        for p in declared.DECLARED_PATCHES
    ]


def test_check_passes_on_the_installed_vllm(capsys) -> None:
    assert main(["patches", "check"]) == 0
    assert "fit the installed vLLM" in capsys.readouterr().out


def test_check_fails_on_a_drifted_patch(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    first, *rest = declared.DECLARED_PATCHES
    drifted = dataclasses.replace(first, fingerprint="0000000000000000")
    monkeypatch.setattr(declared, "DECLARED_PATCHES", (drifted, *rest))
    assert main(["patches", "check"]) == 1
    out = capsys.readouterr().out
    assert f"{first.id}: drifted" in out


def test_committed_docs_are_up_to_date() -> None:
    assert DOCS.read_text() == markdown(declared.DECLARED_PATCHES), (
        "docs/patches.md is stale: run `vllm-npu patches docs --output docs/patches.md`"
    )


def test_docs_table_has_a_row_per_patch() -> None:
    text = markdown(declared.DECLARED_PATCHES)
    for patch in declared.DECLARED_PATCHES:
        assert f"| `{patch.id}` |" in text
