"""The README's table of supported releases, generated from compat.toml.

python scripts/compat_table.py           rewrite the table in README.md
python scripts/compat_table.py --check   exit 1 when README.md disagrees
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tomllib
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
COMPAT = ROOT / "compat.toml"
README = ROOT / "README.md"
BEGIN = "<!-- compat-table: generated from compat.toml by scripts/compat_table.py -->"
END = "<!-- /compat-table -->"


def render(compat_text: str) -> str:
    """The markdown table, newest vLLM first, with the markers around it."""
    releases = tomllib.loads(compat_text)["vllm"]
    components = list(next(iter(releases.values()))["components"])
    header = ["vLLM", "vllm-npu", "torch", "torch_npu", *components]
    rows = [
        [
            release,
            entry["vllm-npu"],
            entry["torch"],
            entry["torch-npu"],
            *(entry["components"][name] for name in components),
        ]
        for release, entry in sorted(
            releases.items(), key=lambda item: Version(item[0]), reverse=True
        )
    ]
    lines = [header, ["---"] * len(header), *rows]
    table = "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
    return f"{BEGIN}\n{table}\n{END}"


def current(readme_text: str) -> str:
    """The table section of the README as it stands, markers included."""
    start, end = readme_text.find(BEGIN), readme_text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README.md has no section between {BEGIN!r} and {END!r}")
    return readme_text[start : end + len(END)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="only compare, do not write"
    )
    args = parser.parse_args()
    readme = README.read_text()
    expected = render(COMPAT.read_text())
    if current(readme) == expected:
        return 0
    if args.check:
        print(
            "README.md's version table disagrees with compat.toml; "
            "run python scripts/compat_table.py",
            file=sys.stderr,
        )
        return 1
    README.write_text(readme.replace(current(readme), expected))
    return 0


if __name__ == "__main__":
    sys.exit(main())
