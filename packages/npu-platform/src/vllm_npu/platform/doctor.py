"""``vllm-npu doctor``: is this installation sound? Every check as a row, problems flagged.

Checks: installed vllm-npu distributions, the vLLM/torch/torch_npu/CANN versions
and whether compat.toml supports the combination, the device backend that
would be selected and why, every entry point of ours and of vLLM's plugin
groups (owner, loads or not), the attention backend and communicator that
would be chosen, patch statuses (through ``vllm_npu.doctor`` entry points of
other distributions) and the relevant environment variables.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, entry_points, version

from packaging.version import Version

from vllm_npu.platform import _env, _native, discovery
from vllm_npu.platform._entry_points import load_problem
from vllm_npu.platform.versions import VllmVersion

DISTRIBUTIONS = (
    "vllm-npu",
    "vllm-npu-platform",
    "vllm-npu-worker",
    "vllm-npu-attention",
    "vllm-npu-comm",
    "vllm-npu-patches",
)
PLUGIN_GROUPS = (
    "vllm.platform_plugins",
    "vllm.general_plugins",
    *(kind.group for kind in discovery.KINDS),
    discovery.DEVICE_BACKENDS_GROUP,
    "vllm_npu.process_hooks",
    "vllm_npu.cli",
    "vllm_npu.doctor",
)
DOCTOR_GROUP = "vllm_npu.doctor"
"""Entry points ``name = module:callable``; the callable returns ``list[Row]``."""
ENVIRONMENT = (
    _env.DEVICE,
    _env.ATTENTION_BACKEND,
    _env.MLA_ATTENTION_BACKEND,
    _env.WORKER,
    _env.COMMUNICATOR,
    _env.HOST_THREADS,
    "VLLM_NPU_DISABLE_PATCHES",
    "VLLM_NPU_VLLM_VERSION",
    "VLLM_NPU_HOST_KV_CACHE_GB",
    "VLLM_NPU_HOST_PACKED_LINEAR",
    "VLLM_TARGET_DEVICE",
    "VLLM_PLUGINS",
    "ASCEND_RT_VISIBLE_DEVICES",
    "ASCEND_TOOLKIT_HOME",
    "TORCH_DEVICE_BACKEND_AUTOLOAD",
    "OMP_NUM_THREADS",
    "VLLM_WORKER_MULTIPROC_METHOD",
)


@dataclass
class Row:
    """One finding: ``problem`` is set when it needs the user's attention."""

    section: str
    item: str
    value: str
    problem: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not any(row.problem for row in self.rows)

    def as_dict(self) -> dict[str, object]:
        return {"healthy": self.healthy, "rows": [asdict(row) for row in self.rows]}


def _installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def distribution_rows() -> Iterable[Row]:
    """Our distributions; a missing component distribution is a problem only when the
    component it provides is the one selected (a researcher may bring their own)."""
    for name in DISTRIBUTIONS:
        found = _installed(name)
        if found or name == "vllm-npu":
            yield Row("distributions", name, found or "not installed")
            continue
        elsewhere = _selected_elsewhere(name)
        if elsewhere:
            yield Row("distributions", name, f"not installed (not needed: {elsewhere})")
        else:
            yield Row("distributions", name, "not installed", f"missing: pip install {name}")


ENGINE_COMPONENTS = (discovery.WORKER, discovery.ATTENTION_BACKEND, discovery.COMMUNICATOR)
"""The components every engine loads."""


def _selected_elsewhere(distribution: str) -> str:
    """Why ``distribution`` is not needed (each component it provides is selected by
    another name), or "" when it is needed."""
    kinds = [kind for kind in ENGINE_COMPONENTS if kind.provider == distribution]
    reasons = []
    for kind in kinds:
        name = discovery.requested_name(kind)
        if name == kind.default_name:
            return ""
        reasons.append(f"{kind.label} {name!r} selected by {kind.env_var}")
    return "; ".join(reasons)


def _only_some_models_need(kind: discovery.ComponentKind) -> bool:
    """A component not every engine loads (MLA attention), neither requested nor
    expected here: its default's distribution is not installed (a selective install)."""
    return (
        kind not in ENGINE_COMPONENTS
        and discovery.requested_name(kind) == kind.default_name
        and _installed(kind.provider) is None
    )


def companion_rows() -> Iterable[Row]:
    """torchvision, torchaudio and torchcodec: a build for another torch breaks vLLM."""
    from vllm_npu.platform import _torch_companions

    for finding in _torch_companions.findings(_installed("torch")):
        yield Row("versions", finding.name, finding.version, finding.problem)


def version_rows() -> Iterable[Row]:
    from vllm_npu.platform.versions import vllm_version

    found = vllm_version()
    release = f" (gates use {found.release}, {found.source})" if found.release else ""
    yield Row("versions", "vllm", f"{found.installed}{release}")
    torch_version = _installed("torch")
    yield Row("versions", "torch", torch_version or "not installed",
              "" if torch_version else "missing: pip install torch")
    yield Row("versions", "torch_npu", _installed("torch-npu") or "not installed")
    yield Row("versions", "CANN", _native.cann_version() or "not found")
    yield from compat_rows(found, torch_version, _installed("torch-npu"))


def compat_rows(
    found: VllmVersion, torch_version: str | None, torch_npu_version: str | None
) -> Iterable[Row]:
    """Whether compat.toml lists this vLLM, and pairs it with these torch/torch_npu."""
    from vllm_npu.platform import version_gate

    try:
        verdict = version_gate.check(found)
        pairings = version_gate.supported_releases()
    except version_gate.CompatDataError as error:
        yield Row("versions", "compat.toml", "unreadable", str(error))
        return
    if not verdict.allowed or verdict.message:
        yield Row("versions", "supported", "no", verdict.message or "")
        return
    assert found.release is not None
    pairing = next(
        p for p in pairings
        if (p.vllm.major, p.vllm.minor) == (found.release.major, found.release.minor)
    )
    mismatches = [
        f"{name} {installed} (compat.toml pairs vLLM {pairing.line} with {wanted}): "
        f"pip install '{distribution}=={wanted}'"
        for name, distribution, installed, wanted in (
            ("torch", "torch", torch_version, pairing.torch),
            ("torch_npu", "torch-npu", torch_npu_version, pairing.torch_npu),
        )
        if installed and Version(installed).base_version != Version(wanted).base_version
    ]
    yield Row(
        "versions",
        "supported",
        f"yes: vLLM {pairing.line} line, vllm-npu {pairing.vllm_npu}",
        "; ".join(mismatches),
    )


def torch_npu_rows() -> Iterable[Row]:
    """torch_npu without CANN breaks ``import torch`` itself: tell before importing torch."""
    problem = _native.torch_npu_problem()
    if problem:
        yield Row("device", "torch_npu", "installed, unusable", problem)


def device_rows() -> Iterable[Row]:
    from vllm_npu.platform.device import DeviceBackendError, select_backend

    try:
        selection = select_backend()
    except DeviceBackendError as error:
        yield Row("device", "backend", "none", str(error))
        return
    name = selection.backend.name if selection.backend else "none (plugin inactive)"
    # An installed torch_npu means an Ascend machine: its backend being unusable is a problem.
    unusable = selection.backend is None and importlib.util.find_spec("torch_npu") is not None
    yield Row("device", "backend", f"{name}: {selection.reason}",
              selection.reason if unusable else "")
    if os.environ.get("VLLM_TARGET_DEVICE") == "cpu":
        yield Row("device", "VLLM_TARGET_DEVICE", "cpu",
                  "VLLM_TARGET_DEVICE=cpu makes vLLM skip every platform plugin; unset it")
    yield from ascend_rows()


def ascend_rows() -> Iterable[Row]:
    """Where a torch_npu imports: whether it is the one compat.toml pairs with this
    vLLM, and whether NNAL (the ATB ops' library) loaded."""
    from vllm_npu.platform import _ascend

    if importlib.util.find_spec("torch_npu") is None:
        return
    try:
        importlib.import_module("torch_npu")
    except Exception:  # the backend row says why (CANN missing)
        return
    mismatch = _ascend.version_problem()
    yield Row("device", "torch_npu pairing", "mismatch" if mismatch else "matches compat.toml",
              mismatch or "")
    problem = _ascend.nnal_problem()
    yield Row("device", "NNAL (ATB ops)", "not loaded" if problem else "loaded", problem or "")


def entry_point_rows(load: bool = False) -> Iterable[Row]:
    """Each entry point of ours and of vLLM's plugin groups: owner, and whether it loads.

    By default the check is static for modules not yet imported (see
    ``_entry_points``); ``load`` imports every one for real, which takes longer.
    """
    allowed = os.environ.get("VLLM_PLUGINS")
    how = "loads" if load else "resolves"
    for group in PLUGIN_GROUPS:
        for entry_point in sorted(entry_points(group=group), key=lambda ep: ep.name):
            owner = entry_point.dist.name if entry_point.dist else "?"
            item = f"{group}:{entry_point.name}"
            failure = load_problem(entry_point, load=load)
            if failure:
                yield Row("entry points", item, f"{entry_point.value} ({owner})", failure)
                continue
            problem = ""
            if (
                group.startswith("vllm.")
                and owner.startswith("vllm-npu")
                and allowed is not None
                and entry_point.name not in allowed.split(",")
            ):
                problem = f"not in VLLM_PLUGINS={allowed}: vLLM will not load it"
            yield Row("entry points", item, f"{entry_point.value} ({owner}), {how}", problem)


def component_rows() -> Iterable[Row]:
    for kind in (
        discovery.ATTENTION_BACKEND,
        discovery.MLA_ATTENTION_BACKEND,
        discovery.COMMUNICATOR,
        discovery.WORKER,
    ):
        try:
            entry_point = discovery.find(kind)
        except discovery.ComponentError as error:
            if _only_some_models_need(kind):
                yield Row("components", kind.label, f"none, needed only by some models: {error}")
            else:
                yield Row("components", kind.label, "none", str(error))
            continue
        owner = f"{entry_point.dist.name} {entry_point.dist.version}" if entry_point.dist else "?"
        yield Row(
            "components", kind.label, f"{entry_point.name} = {entry_point.value} (from {owner})"
        )


def contributed_rows() -> Iterable[Row]:
    for entry_point in entry_points(group=DOCTOR_GROUP):
        try:
            yield from entry_point.load()()
        except Exception as error:
            yield Row(entry_point.name, "report", "failed", f"{entry_point.value}: {error}")


def environment_rows() -> Iterable[Row]:
    for name in ENVIRONMENT:
        if name in os.environ:
            yield Row("environment", name, os.environ[name])


def torch_checks(load_entry_points: bool) -> tuple[Callable[[], Iterable[Row]], ...]:
    """Checks that import torch (directly or through the code they load)."""
    return (
        device_rows,
        lambda: entry_point_rows(load=load_entry_points),
        component_rows,
        contributed_rows,
    )


def run_checks(load_entry_points: bool = False) -> Report:
    report = Report(rows=[*distribution_rows(), *version_rows(), *companion_rows()])
    torch_broken = list(torch_npu_rows())
    report.rows.extend(torch_broken)
    if torch_broken:
        report.rows.append(Row("device", "other checks", "skipped: torch cannot be imported"))
    else:
        for check in torch_checks(load_entry_points):
            report.rows.extend(check())
    report.rows.extend(environment_rows())
    return report
