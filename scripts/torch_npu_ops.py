"""The list of torch_npu ops and ``torch.npu`` calls the runtime packages make, with
the real torch_npu's schema and documented limits of each (``docs/torch_npu_ops.md``).

python scripts/torch_npu_ops.py             rewrite docs/torch_npu_ops.md
python scripts/torch_npu_ops.py --check     exit 1 when the file disagrees with the code
python scripts/torch_npu_ops.py --refresh   re-read the real schemas from the torch-npu
                                            wheel of compat.toml's newest release, then
                                            rewrite the docs

Found: ``torch_npu.<op>(...)``, ``torch_npu.atb.<op>(...)`` and ``torch.npu.<name>``
anywhere, and the same through ``torch_npu()`` / ``_npu()`` (accessors that import
lazily), with the keyword arguments each call passes. The tests check that the
torch_npu stand-in has every one of them and accepts those keywords
(tests/test_torch_npu_ops.py), and that it conforms to the real op
(tests/test_torch_npu_conformance.py).

The real schemas come from two committed files of vllm_npu.testing, so that the docs
never depend on the machine or the network: ``torch_npu_schemas.json`` (written by
``--refresh`` from the wheel; the conformance test fails when it is not the newest
wheel's) and ``torch_npu_facts.toml`` (by hand: the ATB ops' schemas, every op's limits).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "packages").glob("*/src"))
SKIPPED = ("npu-testing",)  # the stand-in itself
OP_SUBMODULES = ("atb",)
"""``torch_npu.atb.<op>``: the ATB ops torch_npu exports in a submodule."""
OUTPUT = ROOT / "docs" / "torch_npu_ops.md"
TESTING = ROOT / "packages" / "npu-testing" / "src" / "vllm_npu" / "testing"
SCHEMAS = TESTING / "torch_npu_schemas.json"
FACTS = TESTING / "torch_npu_facts.toml"


@dataclass
class Use:
    """One op (``torch_npu.x``) or device call (``torch.npu.x``) and where it is used."""

    name: str
    keywords: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)


def _is_torch_npu(node: ast.expr) -> bool:
    """``torch_npu``, or ``torch_npu()`` (an accessor that imports it lazily)."""
    if isinstance(node, ast.Call):
        is_accessor = isinstance(node.func, ast.Name) and node.func.id == "torch_npu"
        return is_accessor and not node.args
    return isinstance(node, ast.Name) and node.id == "torch_npu"


def _qualified(node: ast.Attribute) -> str | None:
    value = node.value
    if _is_torch_npu(value):
        return None if node.attr in OP_SUBMODULES else f"torch_npu.{node.attr}"
    if isinstance(value, ast.Attribute) and value.attr in OP_SUBMODULES:
        return f"torch_npu.{value.attr}.{node.attr}" if _is_torch_npu(value.value) else None
    if (
        isinstance(value, ast.Attribute)
        and value.attr == "npu"
        and isinstance(value.value, ast.Name)
        and value.value.id == "torch"
    ):
        return f"torch.npu.{node.attr}"
    is_accessor = isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
    if is_accessor and value.func.id == "_npu" and not value.args:
        return f"torch.npu.{node.attr}"
    return None


def collect() -> dict[str, Use]:
    uses: dict[str, Use] = {}
    for source in SOURCES:
        if source.parent.name in SKIPPED:
            continue
        for path in sorted(source.rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            where = str(path.relative_to(ROOT))
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and (name := _qualified(node)):
                    uses.setdefault(name, Use(name)).files.add(where)
                is_call = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                if is_call and (name := _qualified(node.func)):
                    keywords = (k.arg for k in node.keywords if k.arg)
                    uses.setdefault(name, Use(name)).keywords.update(keywords)
    return dict(sorted(uses.items()))


def refresh(uses: dict[str, Use]) -> None:
    """Rewrite SCHEMAS from the real wheel of compat.toml's newest release (cached)."""
    from vllm_npu.testing.real_torch_npu import fetch, newest_torch_npu

    wheel = fetch(newest_torch_npu(ROOT / "compat.toml"))
    ops = [name.removeprefix("torch_npu.") for name in uses if name.startswith("torch_npu.")]
    data = {
        "torch-npu": wheel.version,
        "ops": {op: wheel.op_schemas(op) for op in ops if wheel.op_schemas(op)},
        "torch.npu": {},
    }
    for name in uses:
        call = name.removeprefix("torch.npu.")
        if name.startswith("torch.npu.") and call in wheel.npu_functions:
            function = wheel.npu_functions[call]
            data["torch.npu"][call] = {"file": function.file, "signature": _signature(function)}
    SCHEMAS.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def _signature(function) -> str:
    parts, keyword_only = [], False
    for name, kind, default in function.parameters:
        if kind == "KEYWORD_ONLY" and not keyword_only:
            parts.append("*")
            keyword_only = True
        prefix = {"VAR_POSITIONAL": "*", "VAR_KEYWORD": "**"}.get(kind, "")
        parts.append(prefix + name + (f"={default}" if default is not None else ""))
    return f"({', '.join(parts)})"


class StaleData(Exception):
    """The committed schemas lack a used op: run --refresh (or add an ATB fact)."""


def render(uses: dict[str, Use]) -> str:
    data = json.loads(SCHEMAS.read_text())
    facts = tomllib.loads(FACTS.read_text())
    version = data["torch-npu"]
    lines = [
        "# torch_npu ops and `torch.npu` calls used by vllm-npu",
        "",
        "Generated from the source by `scripts/torch_npu_ops.py`; do not edit. The",
        "test-only stand-in (`vllm_npu.testing`, `_standin_root/torch_npu`) must",
        "provide each of them and accept the keywords listed (`tests/test_torch_npu_ops.py`),",
        "and conform to the real op: schema, signature and meta (shape) kernel",
        "(`tests/test_torch_npu_conformance.py`).",
        "",
        f"Real schemas: torch-npu {version}, read by `--refresh` from the wheel's",
        "`lib/libtorch_npu.so`; ATB ops from Ascend/op-plugin's sources, checked against",
        "the wheel's declarations. Limits: `vllm_npu/testing/torch_npu_facts.toml`.",
        "",
        "| name | keywords passed | used in |",
        "| --- | --- | --- |",
    ]
    for use in uses.values():
        keywords = ", ".join(f"`{k}`" for k in sorted(use.keywords)) or "-"
        files = "<br>".join(f"`{f}`" for f in sorted(use.files))
        lines.append(f"| `{use.name}` | {keywords} | {files} |")
    for use in uses.values():
        lines += ["", f"## `{use.name}`", "", *_real(use.name, data, facts), ""]
        limits = facts.get("limits", {}).get(use.name.removeprefix("torch_npu."))
        if limits:
            lines += [f"Limits ({limits['source']}):", ""]
            lines += [f"- {limit}" for limit in limits["limits"]]
        else:
            lines.append("Limits: none recorded.")
    return "\n".join(lines) + "\n"


def _real(name: str, data: dict, facts: dict) -> list[str]:
    """The real schema(s) or signature of one op or call, as markdown lines."""
    stale = f"{name} is not in {SCHEMAS.name}: run python scripts/torch_npu_ops.py --refresh"
    if name.startswith("torch.npu."):
        call = data["torch.npu"].get(name.removeprefix("torch.npu."))
        if call is None:
            raise StaleData(stale)
        return [f"Real: `torch.npu.{name.rsplit('.', 1)[1]}{call['signature']}` ({call['file']})"]
    op = name.removeprefix("torch_npu.")
    atb = facts.get("atb", {}).get(op)
    if atb is not None:
        schemas, source = [atb["schema"]], f"ATB op; {atb['source']}"
    elif op in data["ops"]:
        library = "libop_plugin_atb.so" if op.startswith("atb.") else "libtorch_npu.so"
        schemas, source = data["ops"][op], f"lib/{library}"
    else:
        raise StaleData(
            f"{stale} (an ATB op: add its schema to {FACTS.name} from Ascend/op-plugin)"
        )
    return [f"Real schema ({source}):", "", "```", *schemas, "```"]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--refresh", action="store_true")
    args = parser.parse_args()
    uses = collect()
    if args.refresh:
        refresh(uses)
    try:
        text = render(uses)
    except StaleData as error:
        print(error)
        return 1
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run python scripts/torch_npu_ops.py")
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
