"""Holding the torch_npu stand-in to the real torch_npu (tests/test_torch_npu_conformance.py).

- ``read_calls``: the calls the stand-in recorded (``VLLM_NPU_STANDIN_CALL_SPECS``,
  see the stand-in's ``_calls.py``).
- ``RealOps``: the real schemas defined in a private ``torch.library`` namespace, each
  overload with the real wheel's meta kernel, so that a recorded call is bound by the
  dispatcher exactly as ``torch_npu.<op>`` (which is ``torch.ops.npu.<op>``) binds it,
  and yields the real output shapes and dtypes.
- ``looser_than_schema`` / ``looser_than_function``: how a stand-in's Python
  signature accepts more than the real op or ``torch.npu`` function.
- ``atb_declaration_mismatch``: an ATB schema (from Ascend/op-plugin's sources) against
  the wheel's C++ declaration of that op.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib
import torch

from vllm_npu.testing.real_torch_npu import NpuFunction
from vllm_npu.testing.standin import STANDIN_ROOT

FACTS = Path(__file__).with_name("torch_npu_facts.toml")
"""Hand-written: ATB schemas with their source, and each op's documented limits."""
SCHEMAS = Path(__file__).with_name("torch_npu_schemas.json")
"""Generated (scripts/torch_npu_ops.py --refresh): the real schemas of the ops we use."""


def _load_calls_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "vllm_npu_standin_calls", STANDIN_ROOT / "torch_npu" / "_calls.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_calls = _load_calls_module()
CALL_SPECS_ENV: str = _calls.CALL_SPECS_ENV
spec: Callable[[Any], Any] = _calls.spec
"""The stand-in's encoding of a value (tensor -> shape and dtype), for results here too."""


def facts() -> dict[str, Any]:
    return tomllib.loads(FACTS.read_text())


@dataclass(frozen=True)
class RecordedCall:
    """One call of a stand-in op, as specs (see the stand-in's ``_calls.py``)."""

    op: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    result: Any

    def describe(self) -> str:
        def text(value: Any) -> str:
            if value is None:
                return "None"
            if "tensor" in value:
                return f"Tensor{tuple(value['tensor'])}:{value['dtype']}"
            ((kind, content),) = value.items()
            if kind in ("list", "tuple"):
                items = ", ".join(text(v) for v in content[:6])
                return f"[{items}{', ...' if len(content) > 6 else ''}]"
            return repr(content) if kind != "unknown" else f"<{content}>"

        arguments = [text(a) for a in self.args]
        arguments += [f"{k}={text(v)}" for k, v in sorted(self.kwargs.items())]
        return f"{self.op}({', '.join(arguments)})"


def read_calls(path: Path) -> dict[str, list[RecordedCall]]:
    """Op name -> its distinct recorded calls, in the order they were first made."""
    calls: dict[str, list[RecordedCall]] = {}
    seen: set[str] = set()
    for line in path.read_text().splitlines() if path.exists() else []:
        record = json.loads(line)
        key = json.dumps([record["op"], record["args"], record["kwargs"]], sort_keys=True)
        if key not in seen:
            seen.add(key)
            call = RecordedCall(
                record["op"], tuple(record["args"]), record["kwargs"], record["result"]
            )
            calls.setdefault(call.op, []).append(call)
    return calls


def _value(encoded: Any) -> Any:
    """A recorded argument as the real op gets it: tensors become meta tensors."""
    if encoded is None:
        return None
    if "tensor" in encoded:
        dtype = getattr(torch, encoded["dtype"])
        return torch.empty(encoded["tensor"], dtype=dtype, device="meta")
    ((kind, content),) = encoded.items()
    if kind == "scalar_type":
        return getattr(torch, content)
    if kind in ("list", "tuple"):
        items = [_value(item) for item in content]
        return items if kind == "list" else tuple(items)
    if kind in ("bool", "int", "float", "str"):
        return content
    raise TypeError(
        f"the stand-in recorded an argument of type {content}, which the checks cannot "
        "rebuild: teach the stand-in's _calls.spec about it"
    )


_namespaces = itertools.count()


def op_name(op: str) -> str:
    """The registered name of an op id: ``atb.<name>`` (``torch_npu.atb.<name>``) or
    ``<name>`` (``torch_npu.<name>``); stand-in calls are recorded under it."""
    return op.rsplit(".", 1)[-1]


class RealOps:
    """The real ops, defined in a fresh private namespace with the real meta kernels.

    ``schemas``: op id (see ``op_name``) -> its schema strings (every overload); ``meta``:
    ``"<npu|atb>::<op>[.<overload>]"`` -> meta kernel. An overload returning ``()``
    (an in-place ATB op) without a meta kernel gets one that returns nothing.
    """

    def __init__(self, schemas: dict[str, list[str]], meta: dict[str, Callable[..., Any]]):
        self.namespace = f"vllm_npu_real_torch_npu_{next(_namespaces)}"
        self._library = torch.library.Library(self.namespace, "DEF")
        self.schemas = schemas
        self._meta = meta
        self._defined: set[str] = set()

    def _define(self, op: str) -> None:
        if op in self._defined:
            return
        for text in self.schemas[op]:
            schema = torch._C.parse_schema(text)
            self._library.define(text)
            suffix = f".{schema.overload_name}" if schema.overload_name else ""
            qualified = schema.name + suffix
            kernel = self._meta.get(f"npu::{qualified}") or self._meta.get(f"atb::{qualified}")
            if kernel is None:
                kernel = _returns_nothing if not schema.returns else _no_kernel(qualified)
            self._library.impl(qualified, kernel, "Meta")
        self._defined.add(op)

    def run(self, op: str, call: RecordedCall) -> Any:
        """The real op's meta outputs for the recorded call, encoded like the stand-in's
        results. Raises what the real op raises when it cannot bind the call (a
        ``RuntimeError`` naming the argument) or its meta kernel rejects it, and
        ``LookupError`` when the real wheel has no meta kernel for the overload."""
        self._define(op)
        packet = getattr(getattr(torch.ops, self.namespace), op_name(op))
        args = [_value(a) for a in call.args]
        kwargs = {k: _value(v) for k, v in call.kwargs.items()}
        return spec(packet(*args, **kwargs))


def _returns_nothing(*args: Any, **kwargs: Any) -> None:
    return None


def _no_kernel(qualified: str) -> Callable[..., Any]:
    def missing(*args: Any, **kwargs: Any) -> Any:
        raise LookupError(f"the real wheel has no meta kernel for {qualified}")

    return missing


def _same_default(real: Any, python: Any) -> bool:
    if isinstance(real, tuple | list) and isinstance(python, tuple | list):
        return list(real) == list(python)
    return real == python and isinstance(real, bool) == isinstance(python, bool)


def looser_than_schema(function: Callable[..., Any], schemas: Sequence[str]) -> list[str]:
    """How ``function`` accepts calls that no non-``out`` overload of the real op
    accepts; empty when it is as strict as one of them (a subset is fine)."""
    best: list[str] | None = None
    for text in schemas:
        schema = torch._C.parse_schema(text)
        if schema.overload_name.endswith("out"):
            continue
        problems = _schema_problems(inspect.signature(function), schema)
        if best is None or len(problems) < len(best):
            best = problems
    return best if best is not None else ["the real op has only out= overloads"]


def _schema_problems(signature: inspect.Signature, schema: Any) -> list[str]:
    real = {argument.name: argument for argument in schema.arguments}
    real_positional = [a.name for a in schema.arguments if not a.kwarg_only]
    problems = []
    positional = []
    for name, parameter in signature.parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            problems.append(f"takes *{name}/**{name}; the real op takes only its named arguments")
            continue
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            positional.append(name)
        if name not in real:
            problems.append(f"takes {name!r}, which the real op does not have")
            continue
        argument = real[name]
        has_default = parameter.default is not parameter.empty
        if argument.has_default_value() != has_default or (
            has_default and not _same_default(argument.default_value, parameter.default)
        ):
            real_default = argument.default_value if argument.has_default_value() else "none"
            python_default = parameter.default if has_default else "none"
            problems.append(f"{name}: default {python_default!r}, the real op's {real_default!r}")
    if positional != real_positional[: len(positional)]:
        problems.append(
            f"positional arguments {positional}; the real op's are {real_positional} "
            "(same order, a prefix at most)"
        )
    for argument in schema.arguments:
        if not argument.has_default_value() and argument.name not in signature.parameters:
            problems.append(f"lacks the real op's required argument {argument.name!r}")
    return problems


def looser_than_function(function: Callable[..., Any], real: NpuFunction) -> list[str]:
    """How a stand-in ``torch.npu`` function (or class) accepts more than the real one."""
    parameters = real.parameters
    names = {name: (kind, default) for name, kind, default in parameters}
    takes_any_keyword = any(kind == "VAR_KEYWORD" for _, kind, _ in parameters)
    takes_any_position = any(kind == "VAR_POSITIONAL" for _, kind, _ in parameters)
    positional_real = [n for n, kind, _ in parameters if kind.startswith("POSITIONAL")]
    problems = []
    positional = []
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind is parameter.VAR_KEYWORD:
            if not takes_any_keyword:
                problems.append(f"takes **{name}; {real.name} in {real.file} does not")
            continue
        if parameter.kind is parameter.VAR_POSITIONAL:
            if not takes_any_position:
                problems.append(f"takes *{name}; {real.name} in {real.file} does not")
            continue
        if parameter.kind is not parameter.KEYWORD_ONLY:
            positional.append(name)
        if name not in names:
            if not takes_any_keyword or parameter.kind is not parameter.KEYWORD_ONLY:
                problems.append(f"takes {name!r}, which {real.name} in {real.file} does not have")
            continue
        default = names[name][1]
        has_default = parameter.default is not parameter.empty
        if (default is not None) != has_default or (
            has_default and not _literal_equal(default, parameter.default)
        ):
            problems.append(f"{name}: default {parameter.default!r}, the real one's {default}")
    if positional != positional_real[: len(positional)]:
        problems.append(f"positional arguments {positional}; the real ones are {positional_real}")
    for name, kind, default in parameters:
        required = default is None and kind in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY")
        if required and name not in inspect.signature(function).parameters:
            problems.append(f"lacks the real required argument {name!r}")
    return problems


def _literal_equal(source: str, value: Any) -> bool:
    """A real default (its source) equals the stand-in's; non-literal defaults compare
    by their source text."""
    try:
        return ast.literal_eval(source) == value
    except ValueError:
        return source == repr(value)


_CPP_TYPES = {
    "Tensor": "const at::Tensor&",
    "Tensor(a!)": "at::Tensor&",
    "Optional[Tensor]": "const c10::optional<at::Tensor>&",
    "int": "int64_t",
    "float": "double",
    "bool": "bool",
    "List[int]": "at::IntArrayRef",
    "List[SymInt]": "c10::SymIntArrayRef",
}
"""Schema type (as ``torch._C`` prints it) -> the C++ parameter type op-plugin declares."""


def atb_declaration_mismatch(schema_text: str, declaration: list[str]) -> str | None:
    """Why an ATB schema does not fit the wheel's C++ parameter types, or None."""
    schema = torch._C.parse_schema(schema_text)
    expected = []
    for argument in schema.arguments:
        written = argument.alias_info is not None and argument.alias_info.is_write
        kind = str(argument.type) + ("(a!)" if written else "")
        if kind not in _CPP_TYPES:
            return f"{argument.name}: schema type {kind} has no known C++ type (extend _CPP_TYPES)"
        expected.append(_CPP_TYPES[kind])
    if expected != declaration:
        return (
            f"the schema means C++ ({', '.join(expected)}), the wheel declares "
            f"({', '.join(declaration)})"
        )
    return None
