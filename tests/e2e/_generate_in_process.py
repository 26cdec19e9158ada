"""Greedy generation in a process of its own, printed as JSON: for settings (such as
the device backend) that vLLM resolves once per process.

Usage: python _generate_in_process.py MODEL MAX_NEW_TOKENS JSON_ENGINE_ARGS < prompts.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from conftest import greedy_token_ids, vllm_engine  # noqa: E402


def main() -> None:
    model, max_new_tokens, engine_args = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    prompts = json.load(sys.stdin)
    with vllm_engine(model, **engine_args) as llm:
        token_ids = greedy_token_ids(llm, prompts, max_new_tokens)
    print("RESULT " + json.dumps(token_ids))
    npu = getattr(torch, "npu", None)
    if npu is not None and hasattr(npu, "devices_touched"):  # the torch_npu stand-in
        touched = sorted(npu.devices_touched())
        print(f"FRONTEND_NPU_RUNTIME initialized={npu.is_initialized()} devices={touched}")


if __name__ == "__main__":
    main()
