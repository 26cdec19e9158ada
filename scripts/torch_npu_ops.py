"""The list of torch_npu ops and ``torch.npu`` calls the runtime packages make,
generated from their source (``docs/torch_npu_ops.md``).

python scripts/torch_npu_ops.py           rewrite docs/torch_npu_ops.md
python scripts/torch_npu_ops.py --check   exit 1 when the file disagrees with the code

Found: ``torch_npu.<op>(...)`` and ``torch.npu.<name>`` anywhere, and
``_torch_npu().<op>`` / ``_npu().<name>`` (accessors that import lazily), with the
keyword arguments each call passes. The tests check that the torch_npu stand-in
has every one of them and accepts those keywords.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "packages").glob("*/src"))
SKIPPED = ("npu-testing",)  # the stand-in itself
OUTPUT = ROOT / "docs" / "torch_npu_ops.md"


@dataclass
class Use:
    """One op (``torch_npu.x``) or device call (``torch.npu.x``) and where it is used."""

    name: str
    keywords: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)


def _qualified(node: ast.Attribute) -> str | None:
    value = node.value
    if isinstance(value, ast.Name) and value.id == "torch_npu":
        return f"torch_npu.{node.attr}"
    if (
        isinstance(value, ast.Attribute)
        and value.attr == "npu"
        and isinstance(value.value, ast.Name)
        and value.value.id == "torch"
    ):
        return f"torch.npu.{node.attr}"
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and not value.args:
        if value.func.id == "_npu":
            return f"torch.npu.{node.attr}"
        if value.func.id == "_torch_npu":
            return f"torch_npu.{node.attr}"
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


def render(uses: dict[str, Use]) -> str:
    lines = [
        "# torch_npu ops and `torch.npu` calls used by vllm-npu",
        "",
        "Generated from the source by `scripts/torch_npu_ops.py`; do not edit. The",
        "test-only stand-in (`vllm_npu.testing`, `_standin_root/torch_npu`) must",
        "provide each of them and accept the keywords listed (`tests/test_torch_npu_ops.py`).",
        "",
        "| name | keywords passed | used in |",
        "| --- | --- | --- |",
    ]
    for use in uses.values():
        keywords = ", ".join(f"`{k}`" for k in sorted(use.keywords)) or "-"
        files = "<br>".join(f"`{f}`" for f in sorted(use.files))
        lines.append(f"| `{use.name}` | {keywords} | {files} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render(collect())
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run python scripts/torch_npu_ops.py")
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
