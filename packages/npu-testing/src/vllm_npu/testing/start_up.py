"""Build an engine configuration as vLLM does at start-up and return the error it
raises: for tests of one-line start-up refusals (no engine process starts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def start_up_error(model: str | Path, **engine_args: Any) -> str | None:
    """The ``ValueError`` message ``EngineArgs(...).create_engine_config()`` raises for
    this model and these arguments, or None when the configuration is accepted."""
    from vllm.engine.arg_utils import EngineArgs

    try:
        EngineArgs(model=str(model), **engine_args).create_engine_config()
    except ValueError as error:
        # vLLM's configs are pydantic dataclasses: a ValueError raised while one is
        # validated arrives inside its ValidationError.
        errors = getattr(error, "errors", None)
        if errors is not None:
            return str(errors()[0]["ctx"]["error"])
        return str(error)
    return None


def start_up_errors_in_backend(
    device: str, cases: list[tuple[str | Path, dict[str, Any]]]
) -> list[str | None]:
    """``start_up_error`` for each ``(model, engine_args)`` case, in one fresh process
    whose platform runs the device backend ``device`` (``VLLM_NPU_DEVICE``)."""
    payload = [[str(model), args] for model, args in cases]
    result = subprocess.run(
        [sys.executable, "-m", __name__],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env={**os.environ, "VLLM_NPU_DEVICE": device},
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError((result.stdout + result.stderr)[-4000:])
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def main() -> None:
    """``python -m vllm_npu.testing.start_up < cases.json``: for each ``[model,
    engine_args]`` case, in this process's platform, print ``RESULT <json list>`` of
    their start-up errors (null where accepted)."""
    cases = json.load(sys.stdin)
    print("RESULT " + json.dumps([start_up_error(model, **args) for model, args in cases]))


if __name__ == "__main__":
    main()
