"""``vllm-npu patches``: list the patches and their status here, check for drift, write the docs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vllm_npu.patches.declaration import PatchStatus

TROUBLE = (PatchStatus.DRIFTED, PatchStatus.FAILED)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("patches", help="the patches vllm-npu makes to vLLM")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="each patch and its status in this environment")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=_list)
    check = actions.add_parser(
        "check", help="exit 1 when a patch for the installed vLLM drifted or fails"
    )
    check.set_defaults(run=_check)
    docs = actions.add_parser("docs", help="the Markdown table of all patches")
    docs.add_argument("--output", type=Path, help="write it here instead of printing")
    docs.set_defaults(run=_docs)
    parser.set_defaults(run=_list, json=False)


def _rows(ignore_conditions: bool) -> list[dict[str, str]]:
    from vllm_npu.patches.declared import DECLARED_PATCHES
    from vllm_npu.patches.manager import PatchManager

    outcomes = PatchManager(DECLARED_PATCHES).dry_run(ignore_conditions=ignore_conditions)
    return [
        {
            "id": patch.id,
            "processes": ",".join(patch.processes),
            "target": patch.target,
            "vllm": patch.vllm_versions,
            "status": outcomes[patch.id].status.value,
            "detail": outcomes[patch.id].detail,
        }
        for patch in DECLARED_PATCHES
    ]


def _print_table(rows: list[dict[str, str]]) -> None:
    columns = ("id", "processes", "target", "vllm", "status", "detail")
    widths = {c: max([len(c), *(len(row[c]) for row in rows)]) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())


def _list(args: argparse.Namespace) -> int:
    rows = _rows(ignore_conditions=False)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows)
    return 0


def _check(args: argparse.Namespace) -> int:
    rows = _rows(ignore_conditions=True)
    trouble = [row for row in rows if row["status"] in {s.value for s in TROUBLE}]
    for row in trouble:
        print(f"{row['id']}: {row['status']}: {row['detail']}")
    if not trouble:
        print(f"all {len(rows)} patches fit the installed vLLM (or are out of its range)")
    return 1 if trouble else 0


def _docs(args: argparse.Namespace) -> int:
    from vllm_npu.patches._docs import markdown
    from vllm_npu.patches.declared import DECLARED_PATCHES

    text = markdown(DECLARED_PATCHES)
    if args.output:
        args.output.write_text(text)
    else:
        print(text, end="")
    return 0
