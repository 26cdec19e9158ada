"""The torch_npu stand-in conforms to the real torch_npu, op by op.

The real wheel is the torch-npu of compat.toml's newest release, downloaded (never
installed) and cached by ``vllm_npu.testing.real_torch_npu``; when it cannot be had
these tests fail, they do not skip. For every torch_npu op the packages call
(``scripts/torch_npu_ops.py``'s ``collect()``) and every op the stand-in provides:

- the op exists in the real wheel: a schema registered in ``lib/libtorch_npu.so``,
  or an ATB op of ``libop_plugin_atb.so`` whose schema (from Ascend/op-plugin,
  ``torch_npu_facts.toml``) fits the wheel's C++ declaration;
- the stand-in's Python signature is no looser than the real schema: no argument
  the real op lacks, positional arguments in the real order, the same defaults, every
  required argument (a stand-in may leave out optional arguments: it rejects them);
- every distinct call the Ascend tests make (the tests that use
  ``vllm_npu.testing.standin``; the stand-in records their calls, in this session
  when it runs them all before these tests, else in a run of their own) binds to
  the real schema (the real schema is defined in a private ``torch.library``
  namespace, so the dispatcher binds it as it binds ``torch.ops.npu.<op>``, which is
  what ``torch_npu.<op>`` is), and the real meta kernel, run on meta tensors of the
  recorded shapes, gives the outputs the stand-in gave (shapes, dtypes, structure);
- the ``torch.npu`` calls exist in the wheel's ``torch_npu/npu/*.py`` and the
  stand-in's signature is no looser there either;
- the committed schemas the docs are generated from are the wheel's.

For a new op (MoE, MLA, ...), its author adds the stand-in op (exported in the
stand-in's ``__all__``, or ``torch_npu.atb``'s, and wrapped by ``_calls.recorded`` as
the stand-in's ``__init__`` wraps the others) and a test that calls it through the
package's Ascend kernels with ``vllm_npu.testing.standin`` (a test module that
mentions ``vllm_npu.testing.standin`` is an Ascend test, recorded here), then runs
``python scripts/torch_npu_ops.py --refresh``. Nothing here names an op: an op
without a real schema, without a recorded call, or whose meta kernel is missing
fails with what to add. An ATB op whose schema the wheel does not hold as text also
needs its ``[atb.<op>]`` schema in ``torch_npu_facts.toml``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vllm_npu.testing import real_meta_kernels, real_torch_npu, session_calls
from vllm_npu.testing import torch_npu_conformance as conformance
from vllm_npu.testing.standin import installed

pytestmark = pytest.mark.checks_recorded_calls  # after the session's Ascend tests

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve()
NOT_RECORDED = (THIS, ROOT / "tests" / "test_torch_npu_ops.py")
"""Test modules that use the stand-in only to look at it, not to call its ops."""
MAX_FAILURES_SHOWN = 5


def _collect() -> dict:
    spec = importlib.util.spec_from_file_location(
        "torch_npu_ops", ROOT / "scripts" / "torch_npu_ops.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.collect()


def _standin_ops() -> list[str]:
    """The stand-in's op ids: ``<name>`` for ``torch_npu.<name>``, ``atb.<name>`` for
    ``torch_npu.atb.<name>``."""
    with installed() as torch_npu:
        ops = [n for n in torch_npu.__all__ if n != "npu" and callable(getattr(torch_npu, n))]
        atb = getattr(torch_npu, "atb", None)
        return sorted([*ops, *(f"atb.{n}" for n in getattr(atb, "__all__", ()))])


def _standin_op(torch_npu: object, op: str) -> object | None:
    for part in op.split("."):
        torch_npu = getattr(torch_npu, part, None)
    return torch_npu


USES = _collect()
USED_OPS = sorted(n.removeprefix("torch_npu.") for n in USES if n.startswith("torch_npu."))
DEVICE_CALLS = sorted(n.removeprefix("torch.npu.") for n in USES if n.startswith("torch.npu."))
OPS = sorted(set(USED_OPS) | set(_standin_ops()))
FACTS = conformance.facts()


@pytest.fixture(scope="module")
def real() -> real_torch_npu.RealTorchNpu:
    try:
        version = real_torch_npu.newest_torch_npu(ROOT / "compat.toml")
        return real_torch_npu.fetch(version)
    except real_torch_npu.WheelUnavailable as error:
        pytest.fail(f"the real torch-npu wheel is needed for these checks: {error}")


@pytest.fixture(scope="module")
def real_ops(real: real_torch_npu.RealTorchNpu) -> conformance.RealOps:
    meta = {}
    for member in (real_torch_npu.META_REGISTRATIONS, real_torch_npu.ATB_META_REGISTRATIONS):
        meta.update(real_meta_kernels.meta_kernels(real.read(member), member))
    atb_module = {f"atb.{op}": schemas for op, schemas in real.atb_module_schemas.items()}
    atb = {op: [fact["schema"]] for op, fact in FACTS.get("atb", {}).items()}
    return conformance.RealOps({**real.schemas, **atb_module, **atb}, meta)


def _ascend_test_modules() -> list[Path]:
    candidates = [*ROOT.glob("packages/*/tests/**/test_*.py"), *ROOT.glob("tests/**/test_*.py")]
    return sorted(
        path
        for path in candidates
        if path.resolve() not in NOT_RECORDED and "vllm_npu.testing.standin" in path.read_text()
    )


@pytest.fixture(scope="module")
def recorded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[conformance.RecordedCall]]:
    """Every distinct stand-in call of one run of the Ascend tests: this session's
    (``vllm_npu.testing.session_calls``) when it ran them all, else a run of their own
    in a subprocess (end-to-end tests aside)."""
    session = session_calls.complete_recording(request.config, _ascend_test_modules())
    if session is not None:
        return conformance.read_calls(session)
    log = tmp_path_factory.mktemp("calls") / "calls.jsonl"
    modules = [str(p.relative_to(ROOT)) for p in _ascend_test_modules()]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not e2e"]
    environment = {**os.environ, conformance.CALL_SPECS_ENV: str(log)}
    result = subprocess.run(
        [*command, *modules], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    if result.returncode not in (0, 1):  # 1: some tests failed; they report that themselves
        tail = "\n".join(result.stdout.splitlines()[-15:])
        pytest.fail(f"the Ascend tests could not run while their calls were recorded:\n{tail}")
    return conformance.read_calls(log)


def test_the_ascend_tests_are_found() -> None:
    modules = {p.name for p in _ascend_test_modules()}
    assert {"test_ascend_kernels.py", "test_custom_ops.py"} <= modules


@pytest.mark.parametrize("op", OPS)
def test_op_is_in_the_real_wheel(op: str, real: real_torch_npu.RealTorchNpu) -> None:
    where = f"torch-npu {real.version}"
    if real.op_schemas(op):
        return
    if op.startswith("atb."):
        pytest.fail(
            f"torch_npu.{op} is not an op of {where} whose schema {real_torch_npu.ATB_LIBRARY} "
            "holds as text (misspelt?)"
        )
    if op not in real.atb_ops:
        pytest.fail(
            f"torch_npu.{op} is not an op of {where}: no schema registered in "
            f"{real_torch_npu.SCHEMA_LIBRARY} and no ATB op of {real_torch_npu.ATB_LIBRARY} "
            "(misspelt, or gone from this release?)"
        )
    fact = FACTS.get("atb", {}).get(op)
    assert fact is not None, (
        f"torch_npu.{op} is an ATB op of {where}, whose schema the wheel holds only as C++: "
        f"add [atb.{op}] schema and source to {conformance.FACTS.name}, from the m.def of "
        "Ascend/op-plugin's op_plugin/ops/atb/*.cpp"
    )
    assert torch._C.parse_schema(fact["schema"]).name == op
    declaration = real.atb_declarations.get(op)
    assert declaration is not None, f"{real_torch_npu.ATB_HEADER} of {where} declares no {op}"
    mismatch = conformance.atb_declaration_mismatch(fact["schema"], declaration)
    assert mismatch is None, f"[atb.{op}] of {conformance.FACTS.name} vs {where}: {mismatch}"


@pytest.mark.parametrize("op", OPS)
def test_standin_signature_is_no_looser(op: str, real_ops: conformance.RealOps) -> None:
    with installed() as torch_npu:
        function = _standin_op(torch_npu, op)
        assert function is not None, f"the stand-in lacks torch_npu.{op}"
    schemas = real_ops.schemas.get(op)
    assert schemas, f"torch_npu.{op} has no real schema (see test_op_is_in_the_real_wheel)"
    problems = conformance.looser_than_schema(function, schemas)
    assert not problems, f"the stand-in's torch_npu.{op}: " + "; ".join(problems)


@pytest.mark.parametrize("op", OPS)
def test_recorded_calls_bind_and_match_the_meta_kernel(
    op: str, recorded: dict, real_ops: conformance.RealOps
) -> None:
    calls = recorded.get(conformance.op_name(op))
    assert calls, (
        f"no Ascend test called torch_npu.{op}: add a test that runs the package's Ascend "
        "kernel on the stand-in (a test module using vllm_npu.testing.standin), with the "
        "stand-in op wrapped by its _calls.recorded"
    )
    assert op in real_ops.schemas, f"torch_npu.{op} has no real schema"
    failures = []
    for call in calls:
        try:
            real = real_ops.run(op, call)
        except (RuntimeError, TypeError, ValueError, LookupError, IndexError) as error:
            failures.append(f"{call.describe()}: the real op rejects it: {_first_line(error)}")
            continue
        if real != call.result:
            failures.append(
                f"{call.describe()}: the stand-in returned {_shapes(call.result)}, "
                f"the real meta kernel {_shapes(real)}"
            )
    assert not failures, (
        f"{len(failures)} of {len(calls)} recorded calls of torch_npu.{op} do not conform:\n"
        + "\n".join(failures[:MAX_FAILURES_SHOWN])
    )


def _first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"


def _shapes(encoded: object) -> str:
    return json.dumps(encoded).replace('"', "")


@pytest.mark.parametrize("name", DEVICE_CALLS)
def test_standin_device_call_is_the_real_ones(name: str, real: real_torch_npu.RealTorchNpu) -> None:
    function = real.npu_functions.get(name)
    assert function is not None, (
        f"torch.npu.{name} is not defined in torch_npu/npu/*.py of torch-npu {real.version}"
    )
    with installed():
        standin = getattr(torch.npu, name, None)
        assert standin is not None, f"the stand-in's torch.npu lacks {name}"
        problems = conformance.looser_than_function(standin, function)
    assert not problems, f"the stand-in's torch.npu.{name}: " + "; ".join(problems)


def test_committed_schemas_are_the_wheels(real: real_torch_npu.RealTorchNpu) -> None:
    committed = json.loads(conformance.SCHEMAS.read_text())
    refresh = "run python scripts/torch_npu_ops.py --refresh"
    assert committed["torch-npu"] == real.version, (
        f"{conformance.SCHEMAS.name} holds torch-npu {committed['torch-npu']}'s schemas, "
        f"compat.toml's newest is {real.version}: {refresh}"
    )
    wanted = {op: real.op_schemas(op) for op in USED_OPS if real.op_schemas(op)}
    assert committed["ops"] == wanted, f"{conformance.SCHEMAS.name} is out of date: {refresh}"
