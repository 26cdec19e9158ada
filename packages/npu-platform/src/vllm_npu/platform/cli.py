"""The ``vllm-npu`` command; subcommands come from the ``vllm_npu.cli`` entry point group.

Each entry point is a callable ``register(subparsers)`` that adds one
subcommand with ``set_defaults(run=callable(args) -> int)``; so the patches
distribution adds ``vllm-npu patches`` without the platform importing it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

GROUP = "vllm_npu.cli"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vllm-npu", description="Tools of the vllm-npu vLLM plugin."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for entry_point in sorted(entry_points(group=GROUP), key=lambda ep: ep.name):
        try:
            register = entry_point.load()
        except Exception as error:  # a broken subcommand must not hide the others
            print(
                f"vllm-npu: subcommand {entry_point.name!r} ({entry_point.value}) "
                f"failed to load: {error}",
                file=sys.stderr,
            )
            continue
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
