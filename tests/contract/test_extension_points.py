"""Our classes still fit the vLLM extension points they implement, in this vLLM.

For each extension point: every method or attribute we define (in the class
or in one of our ``_compat`` mixins) exists in vLLM's base class with a
signature that accepts every call vLLM's can, every abstract method is
implemented, and the methods vLLM needs from an out-of-tree class are ours.
A name vLLM lacks in some supported releases is listed in ``NOT_IN_VLLM``
with the releases that lack it; an entry no supported release needs fails too.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomllib
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from vllm_npu.platform.versions import vllm_version

ROOT = Path(__file__).resolve().parents[2]
SUPPORTED = sorted(
    (Version(v) for v in tomllib.loads((ROOT / "compat.toml").read_text())["vllm"]),
)


@dataclass(frozen=True)
class ExtensionPoint:
    ours: str
    """``module:Class`` of our implementation."""
    base: str
    """``module:Class`` of the vLLM class it extends."""
    own: frozenset[str] = frozenset()
    """Helpers of ours that override nothing."""
    required: frozenset[str] = frozenset()
    """Methods vLLM needs us to define although its base does not mark them abstract."""
    not_in_vllm: dict[str, str] = field(default_factory=dict)
    """Names vLLM lacks in some supported releases: name -> those releases."""
    via_getattr: frozenset[str] = frozenset()
    """torch-device functions vLLM reaches through the base's ``__getattr__``."""
    duck_typed: dict[str, str] = field(default_factory=dict)
    """Methods vLLM calls without declaring them on the base: name -> the
    ``module:Class`` of an in-tree implementation whose signature we match."""
    called_like: dict[str, str] = field(default_factory=dict)
    """Our method -> the base's method vLLM calls it in place of, with the same
    arguments (``CustomOp`` dispatches ``forward`` to ``forward_oot``)."""

    @property
    def id(self) -> str:
        return self.ours.rpartition(":")[2]


EXTENSION_POINTS = (
    ExtensionPoint(
        "vllm_npu.platform.npu_platform:NPUPlatform",
        "vllm.platforms.interface:Platform",
        own=frozenset({"backend"}),
        via_getattr=frozenset(
            {"device_count", "synchronize", "empty_cache", "mem_get_info"}
        ),
        required=frozenset(
            {
                "get_attn_backend_cls",
                "check_and_update_config",
                "manual_seed_all",
                "is_pin_memory_available",
                "set_device",
                "get_device_communicator_cls",
            }
        ),
        not_in_vllm={
            # Our runner calls it before vLLM itself does (0.31).
            "register_triton_kernel_overrides": "<0.31",
            "validate_environ": "<0.31",
            # vLLM's MLA layer asks for a prefill backend from 0.32 on.
            "get_mla_prefill_backend_cls": "<0.32",
        },
    ),
    ExtensionPoint(
        "vllm_npu.attention.backend:NPUAttentionBackend",
        "vllm.v1.attention.backend:AttentionBackend",
        # Called by our platform's check_and_update_config (start-up refusal).
        own=frozenset({"unsupported_model_features"}),
    ),
    ExtensionPoint(
        "vllm_npu.attention.backend:NPUAttentionMetadataBuilder",
        "vllm.v1.attention.backend:AttentionMetadataBuilder",
    ),
    ExtensionPoint(
        "vllm_npu.attention.backend:NPUAttentionImpl",
        "vllm.v1.attention.backend:AttentionImpl",
        # Our Ascend model runner zeroes KV blocks through zero_kv_blocks.
        own=frozenset({"kernel_kv_cache", "zero_kv_blocks"}),
        # Called by the attention layer when forward_includes_kv_cache_update
        # is False; only MLA declares it, with other arguments.
        duck_typed={
            "do_kv_cache_update": (
                "vllm.v1.attention.backends.triton_attn:TritonAttentionImpl"
            )
        },
    ),
    ExtensionPoint(
        "vllm_npu.attention.mla:NPUMLABackend",
        "vllm.model_executor.layers.attention.mla_attention:MLACommonBackend",
        # Start-up refusal and the prefill backend, both asked for by our platform.
        own=frozenset({"unsupported_model_features", "get_mla_prefill_backend_cls"}),
    ),
    ExtensionPoint(
        "vllm_npu.attention.mla:NPUMLAMetadataBuilder",
        "vllm.v1.attention.backend:AttentionMetadataBuilder",
        own=frozenset({"_build_prefill"}),
    ),
    ExtensionPoint(
        "vllm_npu.attention.mla:NPUMLAImpl",
        "vllm.v1.attention.backend:MLAAttentionImpl",
        # Our Ascend model runner zeroes KV blocks through zero_kv_blocks.
        own=frozenset({"zero_kv_blocks"}),
    ),
    ExtensionPoint(
        "vllm_npu.attention.mla:NPUMLAPrefillBackend",
        "vllm.v1.attention.backends.mla.prefill.base:MLAPrefillBackend",
    ),
    ExtensionPoint(
        "vllm_npu.comm.communicator:NPUCommunicator",
        "vllm.distributed.device_communicators.base_device_communicator:DeviceCommunicatorBase",
        # all_gatherv's gather of uneven sizes (the EP group's MoE dispatch).
        own=frozenset({"_all_gatherv"}),
    ),
    ExtensionPoint(
        "vllm_npu.worker.npu_worker:NPUWorker",
        "vllm.v1.worker.gpu_worker:Worker",
        own=frozenset({"_warm_up_if_compiled", "_npu_kv_cache_bytes"}),
    ),
    ExtensionPoint(
        "vllm_npu.worker.host_model_runner:HostModelRunner",
        "vllm.v1.worker.cpu_model_runner:CPUModelRunner",
    ),
    ExtensionPoint(
        "vllm_npu.worker.ascend_model_runner:AscendModelRunner",
        "vllm.v1.worker.cpu_model_runner:CPUModelRunner",
    ),
    ExtensionPoint(
        "vllm_npu.worker.custom_ops:NPURMSNorm",
        "vllm.model_executor.layers.layernorm:RMSNorm",
        called_like={"forward_oot": "forward_native"},
        own=frozenset({"kernel_set"}),
    ),
    ExtensionPoint(
        "vllm_npu.worker.custom_ops:NPURotaryEmbedding",
        "vllm.model_executor.layers.rotary_embedding:RotaryEmbedding",
        called_like={"forward_oot": "forward_native"},
        own=frozenset({"kernel_set"}),
    ),
    ExtensionPoint(
        "vllm_npu.worker.custom_ops:NPUSiluAndMul",
        "vllm.model_executor.layers.activation:SiluAndMul",
        called_like={"forward_oot": "forward_native"},
        own=frozenset({"kernel_set"}),
    ),
)


def _load(qualname: str) -> type:
    module, _, name = qualname.partition(":")
    return getattr(importlib.import_module(module), name)


def _defined_by_us(cls: type) -> dict[str, Any]:
    """Every name our classes (not vLLM's) define along ``cls``'s MRO, raw."""
    defined: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("vllm_npu."):
            continue
        for name, value in vars(klass).items():
            if name.startswith("__") and name != "__init__":
                continue
            if name == "_abc_impl":
                continue
            defined[name] = value
    return defined


def _raw_in_vllm(base: type, name: str) -> Any:
    for klass in base.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
        if name in getattr(klass, "__annotations__", {}):
            return klass.__annotations__[name]
    raise AttributeError(name)


def _kind(raw: Any) -> str:
    if isinstance(raw, staticmethod):
        return "staticmethod"
    if isinstance(raw, classmethod):
        return "classmethod"
    if isinstance(raw, property):
        return "property"
    if inspect.isfunction(raw):
        return "method"
    return "attribute"


def _function(raw: Any) -> Any:
    if isinstance(raw, (staticmethod, classmethod)):
        return raw.__func__
    if isinstance(raw, property):
        return raw.fget
    return raw


def signature_problems(ours: Any, theirs: Any, constructor: bool = False) -> list[str]:
    """Calls vLLM's signature accepts that ours would not.

    A base class's ``__init__`` defaults serve its own construction; vLLM
    builds ours with every argument, so they need not be optional in ours.
    """
    mine = list(inspect.signature(ours).parameters.values())
    base = list(inspect.signature(theirs).parameters.values())
    kind = inspect.Parameter
    takes_args = any(p.kind is kind.VAR_POSITIONAL for p in mine)
    takes_kwargs = any(p.kind is kind.VAR_KEYWORD for p in mine)
    positional = [
        p for p in mine if p.kind in (kind.POSITIONAL_ONLY, kind.POSITIONAL_OR_KEYWORD)
    ]
    by_name = {p.name: p for p in mine}
    problems = []
    index = 0
    for parameter in base:
        if parameter.kind is kind.VAR_POSITIONAL:
            if not takes_args:
                problems.append(f"vLLM accepts *{parameter.name}, ours does not")
            continue
        if parameter.kind is kind.VAR_KEYWORD:
            if not takes_kwargs:
                problems.append(f"vLLM accepts **{parameter.name}, ours does not")
            continue
        if parameter.kind in (kind.POSITIONAL_ONLY, kind.POSITIONAL_OR_KEYWORD):
            if index < len(positional):
                if (
                    parameter.kind is kind.POSITIONAL_OR_KEYWORD
                    and positional[index].name != parameter.name
                ):
                    problems.append(
                        f"argument {index} is {parameter.name!r} in vLLM, "
                        f"{positional[index].name!r} in ours"
                    )
            elif not takes_args:
                problems.append(
                    f"vLLM passes {parameter.name!r} by position, ours has no room"
                )
            index += 1
        if parameter.kind in (kind.POSITIONAL_OR_KEYWORD, kind.KEYWORD_ONLY):
            own = by_name.get(parameter.name)
            if own is None and not takes_kwargs:
                problems.append(f"ours lacks argument {parameter.name!r}")
            elif (
                own is not None
                and not constructor
                and parameter.default is not kind.empty
                and own.default is kind.empty
                and own.kind not in (kind.VAR_POSITIONAL, kind.VAR_KEYWORD)
            ):
                problems.append(
                    f"{parameter.name!r} is optional in vLLM, required in ours"
                )
    known = {p.name for p in base}
    for parameter in mine:
        if (
            parameter.name not in known
            and parameter.default is kind.empty
            and parameter.kind not in (kind.VAR_POSITIONAL, kind.VAR_KEYWORD)
        ):
            problems.append(
                f"ours requires {parameter.name!r}, which vLLM never passes"
            )
    return problems


def _in_this_vllm(specifier: str) -> bool:
    release = vllm_version().release
    assert release is not None, "set VLLM_NPU_VLLM_VERSION to run the contract tests"
    return release in SpecifierSet(specifier)


@pytest.mark.parametrize("point", EXTENSION_POINTS, ids=lambda p: p.id)
def test_every_override_exists_with_a_compatible_signature(
    point: ExtensionPoint,
) -> None:
    base = _load(point.base)  # vLLM first: importing ours first can be circular
    ours = _load(point.ours)
    assert issubclass(ours, base), f"{point.id} no longer extends {point.base}"
    problems = []
    if point.via_getattr and "__getattr__" not in vars(base):
        problems.append(f"{point.base} no longer forwards {sorted(point.via_getattr)}")
    for name, raw in _defined_by_us(ours).items():
        if name in point.own or name in point.via_getattr:
            continue
        lacking = point.not_in_vllm.get(name)
        reference = _load(point.duck_typed[name]) if name in point.duck_typed else base
        try:
            theirs = _raw_in_vllm(reference, point.called_like.get(name, name))
        except AttributeError:
            if lacking is None or not _in_this_vllm(lacking):
                problems.append(
                    f"{point.id}.{name}: stale override, vLLM has no {name}"
                )
            continue
        if lacking is not None and _in_this_vllm(lacking):
            problems.append(
                f"{point.id}.{name}: vLLM has it, but NOT_IN_VLLM says releases "
                f"{lacking} lack it; fix the entry"
            )
        ours_kind, their_kind = _kind(raw), _kind(theirs)
        if their_kind == "attribute" and ours_kind == "attribute":
            continue
        if name in point.called_like and (ours_kind, their_kind) == ("method", "staticmethod"):
            # Called through the instance either way: compare without ``self``.
            mine = functools.partial(_function(raw), None)
            problems += [
                f"{point.id}.{name}: {problem}"
                for problem in signature_problems(mine, _function(theirs))
            ]
            continue
        if ours_kind != their_kind:
            problems.append(
                f"{point.id}.{name}: ours is a {ours_kind}, vLLM's a {their_kind}"
            )
            continue
        problems += [
            f"{point.id}.{name}: {problem}"
            for problem in signature_problems(
                _function(raw), _function(theirs), constructor=name == "__init__"
            )
        ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("point", EXTENSION_POINTS, ids=lambda p: p.id)
def test_every_abstract_and_required_method_is_implemented(
    point: ExtensionPoint,
) -> None:
    _load(point.base)
    ours = _load(point.ours)
    abstract = sorted(getattr(ours, "__abstractmethods__", ()))
    assert not abstract, f"{point.id} leaves abstract: {', '.join(abstract)}"
    missing = sorted(point.required - set(_defined_by_us(ours)))
    assert not missing, f"{point.id} must define: {', '.join(missing)}"


@pytest.mark.parametrize("point", EXTENSION_POINTS, ids=lambda p: p.id)
def test_version_exceptions_still_apply_to_a_supported_release(
    point: ExtensionPoint,
) -> None:
    dead = [
        name
        for name, lacking in point.not_in_vllm.items()
        if not any(release in SpecifierSet(lacking) for release in SUPPORTED)
    ]
    assert not dead, (
        f"{point.id}: no supported vLLM lacks {', '.join(dead)} any more; "
        "drop them from not_in_vllm"
    )


def test_the_signature_check_sees_what_would_break_a_call() -> None:
    def vllm_side(self, layer, key=None, **kwargs): ...

    def compatible(self, layer, key=None, value=None, **kwargs): ...

    def renamed(self, module, key=None, **kwargs): ...

    def stricter(self, layer, key, *, scale, **kwargs): ...

    assert signature_problems(compatible, vllm_side) == []
    assert signature_problems(renamed, vllm_side) == [
        "argument 1 is 'layer' in vLLM, 'module' in ours",
        "ours requires 'module', which vLLM never passes",
    ]
    assert signature_problems(stricter, vllm_side) == [
        "'key' is optional in vLLM, required in ours",
        "ours requires 'scale', which vLLM never passes",
    ]


def test_our_ir_implementations_match_vllms_ir_ops() -> None:
    """vLLM IR (``vllm.ir``): each op we implement exists with our signature, and the
    op priority config (``kernel_config.ir_op_priority``) can put ours first."""
    ir_op = pytest.importorskip("vllm.ir.op", reason="this vLLM has no vLLM IR")
    from dataclasses import fields

    from vllm.config.kernel import IrOpPriorityConfig

    from vllm_npu.worker.ir_kernels import IMPLEMENTATIONS

    configurable = {f.name for f in fields(IrOpPriorityConfig)}
    problems = []
    for name, (ours, fits) in IMPLEMENTATIONS.items():
        op = ir_op.IrOp.registry.get(name)
        if op is None:
            problems.append(f"vLLM IR has no op {name!r} any more")
            continue
        native = inspect.signature(op.impls["native"].impl_fn)
        for function in (ours, fits):
            if inspect.signature(function).parameters != native.parameters:
                problems.append(
                    f"{function.__qualname__}{inspect.signature(function)} "
                    f"is not vLLM's {name}{native}"
                )
        if name not in configurable:
            problems.append(f"IrOpPriorityConfig has no {name!r}: ours cannot go first")
    assert not problems, "\n".join(problems)
