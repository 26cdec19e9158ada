"""The patch framework: apply, revert, idempotence, isolation, gating, drift, disabling."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from vllm_npu.patches import Patch, PatchError, PatchManager, PatchStatus, _lazy, fingerprint_of

TARGET_SOURCE = """
def greet(name):
    return f"hello {name}"


def farewell(name):
    return f"bye {name}"
"""


@pytest.fixture
def target_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A real module on sys.path for patches to target; removed afterwards."""
    (tmp_path / "patch_target_mod.py").write_text(textwrap.dedent(TARGET_SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("VLLM_NPU_DISABLE_PATCHES", raising=False)
    monkeypatch.setenv("VLLM_NPU_VLLM_VERSION", "0.32.0")
    sys.modules.pop("patch_target_mod", None)
    yield tmp_path
    sys.modules.pop("patch_target_mod", None)
    for patch_id in ("shout", "shout-bye", "broken", "missing"):
        _lazy.cancel("patch_target_mod", patch_id)


def shout(original):
    def loud(name):
        return original(name).upper()

    return loud


def make_patch(patch_id="shout", qualname="greet", fingerprint=None, **overrides) -> Patch:
    if fingerprint is None:
        import patch_target_mod

        fingerprint = fingerprint_of(getattr(patch_target_mod, qualname))
    fields = dict(
        id=patch_id,
        processes=("platform",),
        target=f"patch_target_mod:{qualname}",
        vllm_versions=">=0.28,<0.33",
        why="test",
        how="upper-case",
        upstream="none: test",
        removal="never",
        fingerprint=fingerprint,
        replacement=shout,
    )
    return Patch(**{**fields, **overrides})


def test_apply_and_revert(target_module) -> None:
    import patch_target_mod

    manager = PatchManager([make_patch()])
    outcomes = manager.apply("platform")
    assert outcomes["shout"].status is PatchStatus.APPLIED
    assert patch_target_mod.greet("npu") == "HELLO NPU"
    manager.revert()
    assert patch_target_mod.greet("npu") == "hello npu"
    assert manager.outcome("shout").status is PatchStatus.NOT_APPLIED


def test_applying_twice_patches_once(target_module) -> None:
    import patch_target_mod

    manager = PatchManager([make_patch()])
    manager.apply("platform")
    manager.apply("platform")
    assert patch_target_mod.greet("npu") == "HELLO NPU"  # not wrapped twice
    manager.revert()
    assert patch_target_mod.greet("npu") == "hello npu"


def test_only_the_declared_process(target_module) -> None:
    manager = PatchManager([make_patch(processes=("worker",))])
    assert manager.apply("platform") == {}
    assert manager.apply("worker")["shout"].status is PatchStatus.APPLIED
    manager.revert()


def test_a_broken_patch_does_not_stop_the_others(target_module) -> None:
    import patch_target_mod

    def explode(original):
        raise RuntimeError("boom")

    manager = PatchManager(
        [
            make_patch("broken", replacement=explode),
            make_patch("missing", qualname="nowhere", fingerprint="0" * 16),
            make_patch("shout-bye", qualname="farewell"),
        ]
    )
    outcomes = manager.apply("platform")
    assert outcomes["broken"].status is PatchStatus.FAILED
    assert "boom" in outcomes["broken"].detail
    assert outcomes["missing"].status is PatchStatus.DRIFTED
    assert outcomes["shout-bye"].status is PatchStatus.APPLIED
    assert patch_target_mod.farewell("npu") == "BYE NPU"
    assert patch_target_mod.greet("npu") == "hello npu"
    manager.revert()


def test_out_of_range_vllm_version_is_skipped(target_module, monkeypatch) -> None:
    import patch_target_mod

    monkeypatch.setenv("VLLM_NPU_VLLM_VERSION", "0.27.0")
    manager = PatchManager([make_patch()])
    outcome = manager.apply("platform")["shout"]
    assert outcome.status is PatchStatus.SKIPPED_OUT_OF_RANGE
    assert "0.27.0" in outcome.detail
    assert patch_target_mod.greet("npu") == "hello npu"


def test_drifted_target_is_refused(target_module, caplog) -> None:
    import patch_target_mod

    manager = PatchManager([make_patch(fingerprint="0123456789abcdef")])
    outcome = manager.apply("platform")["shout"]
    assert outcome.status is PatchStatus.DRIFTED
    assert "changed" in outcome.detail
    assert patch_target_mod.greet("npu") == "hello npu"
    assert "patch shout not applied" in caplog.text


def test_known_harmless_drift_is_applied(target_module) -> None:
    import patch_target_mod

    actual = fingerprint_of(patch_target_mod.greet)
    manager = PatchManager(
        [make_patch(fingerprint="0123456789abcdef", known_fingerprints=(actual,))]
    )
    assert manager.apply("platform")["shout"].status is PatchStatus.APPLIED
    manager.revert()


def test_required_patch_that_drifted_stops_start_up(target_module) -> None:
    import patch_target_mod  # noqa: F401

    manager = PatchManager([make_patch(fingerprint="0123456789abcdef", required=True)])
    with pytest.raises(PatchError, match="patch shout not applied.*changed"):
        manager.apply("platform")


@pytest.mark.parametrize("disabled", ["shout", "other,shout", "*"])
def test_disable_list(target_module, monkeypatch, disabled: str) -> None:
    import patch_target_mod

    monkeypatch.setenv("VLLM_NPU_DISABLE_PATCHES", disabled)
    manager = PatchManager([make_patch()])
    assert manager.apply("platform")["shout"].status is PatchStatus.DISABLED
    assert patch_target_mod.greet("npu") == "hello npu"


def test_condition_false_means_not_needed(target_module) -> None:
    manager = PatchManager([make_patch(condition=lambda: False, condition_text="never")])
    outcome = manager.apply("platform")["shout"]
    assert outcome.status is PatchStatus.NOT_NEEDED


def test_lazy_patch_applies_when_module_is_imported(target_module) -> None:
    import patch_target_mod

    fingerprint = fingerprint_of(patch_target_mod.greet)
    del sys.modules["patch_target_mod"]
    manager = PatchManager([make_patch(fingerprint=fingerprint)])
    assert manager.apply("platform")["shout"].status is PatchStatus.PENDING
    import patch_target_mod as reimported

    assert manager.outcome("shout").status is PatchStatus.APPLIED
    assert reimported.greet("npu") == "HELLO NPU"
    manager.revert()
    assert reimported.greet("npu") == "hello npu"


def test_duplicate_ids_are_rejected(target_module) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        PatchManager([make_patch(), make_patch()])


def test_a_name_imported_from_a_patched_module_is_restored_to_the_original(
    target_module,
) -> None:
    import patch_target_mod

    fingerprint = fingerprint_of(patch_target_mod.greet)
    del sys.modules["patch_target_mod"]
    (target_module / "patch_target_user.py").write_text("from patch_target_mod import greet\n")
    sys.modules.pop("patch_target_user", None)
    user_patch = make_patch("shout-user", fingerprint=fingerprint)
    user_patch = Patch(**{**vars(user_patch), "target": "patch_target_user:greet"})
    manager = PatchManager([make_patch(fingerprint=fingerprint), user_patch])
    manager.apply("platform")
    # The user module copies the already patched greet: its own patch still fits.
    import patch_target_user

    try:
        assert manager.outcome("shout-user").status is PatchStatus.APPLIED
        assert patch_target_user.greet("npu") == "HELLO NPU"
        manager.revert()
        assert patch_target_user.greet("npu") == "hello npu"
        assert sys.modules["patch_target_mod"].greet("npu") == "hello npu"
    finally:
        sys.modules.pop("patch_target_user", None)
