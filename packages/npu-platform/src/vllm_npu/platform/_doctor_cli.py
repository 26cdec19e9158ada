"""``vllm-npu doctor``: the report as a table (default) or JSON; exit 1 on problems."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("doctor", help="check that this installation is sound")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--load",
        action="store_true",
        help="import every entry point instead of checking it statically (slower)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vllm_npu.platform.doctor import run_checks

    report = run_checks(load_entry_points=args.load)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        width = max(len(f"{row.section}: {row.item}") for row in report.rows)
        for row in report.rows:
            mark = "PROBLEM" if row.problem else "ok"
            print(f"{mark:<8}{(row.section + ': ' + row.item):<{width}}  {row.value}")
            if row.problem:
                print(f"{'':<8}{'':<{width}}  -> {row.problem}")
        print("\nhealthy" if report.healthy else "\nproblems found")
    return 0 if report.healthy else 1
