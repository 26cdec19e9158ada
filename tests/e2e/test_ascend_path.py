"""The Ascend code path inside real vLLM: torch_npu attention kernels and custom ops
(through the test-only stand-in, tensors on the CPU) generate what transformers does.

The Ascend attention ops take float16/bfloat16 only, so both sides run in float16,
on the prompts whose float32 greedy decisions are clear of float16 rounding (a
near-tie may go either way in any two correct float16 implementations).

``VLLM_NPU_DEVICE=ascend-standin`` selects the Ascend backend's kernel set, model
runner, KV cache layout and block size (128) with the stand-in imported in every
process; vLLM resolves its platform once per process, so each engine runs in a
process of its own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from vllm_npu.testing import (
    DEFAULT_PROMPTS,
    TinyModelSpec,
    hf_greedy_generate,
    hf_greedy_margins,
)

MAX_NEW_TOKENS = 16
CLEAR_MARGIN = 0.03
"""float32 logit gap between the best two tokens above which float16 implementations
agree on the argmax (their rounding error on these models is about 1e-2)."""
SCRIPT = Path(__file__).with_name("_generate_in_process.py")


def clear_of_rounding(prompts: Sequence[str], margins: list[float], at_least: int) -> list[str]:
    """The prompts whose decision margin is above ``CLEAR_MARGIN``; at least
    ``at_least`` of them, or the test's model seed is a bad one."""
    clear = [p for p, margin in zip(prompts, margins, strict=True) if margin > CLEAR_MARGIN]
    assert len(clear) >= at_least, f"too few prompts with clear decisions: {margins}"
    return clear


def clear_greedy_prompts(model: Path) -> list[str]:
    """The default prompts whose float32 greedy decisions over ``MAX_NEW_TOKENS`` are
    clear of float16 rounding (at least six)."""
    margins = hf_greedy_margins(model, DEFAULT_PROMPTS, MAX_NEW_TOKENS)
    return clear_of_rounding(DEFAULT_PROMPTS, margins, 6)


ASCEND_OPS = {
    "_npu_reshape_and_cache",
    "_npu_paged_attention",
    "npu_fused_infer_attention_score",
    "npu_rms_norm",
    "npu_add_rms_norm",
    "npu_rotary_mul",
    "npu_swiglu",
}


def generate_on_ascend_path(
    model: Path, prompts: list[str], call_log: Path, **engine_args: object
) -> str:
    """Run the engine on the stand-in; returns the process's output (a line
    ``RESULT <json>`` holds the token ids). Ops called go to ``call_log``."""
    arguments = [str(model), str(MAX_NEW_TOKENS), json.dumps(engine_args)]
    return run_on_ascend_path(SCRIPT, arguments, prompts, call_log)


def run_on_ascend_path(
    script: Path,
    arguments: list[str],
    stdin: Any,
    call_log: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 900,
) -> str:
    """Run an engine script (``stdin``, as JSON, on its standard input: the prompts, or
    a request) in a process of its own on the stand-in, with ``env`` added; returns its
    output. Ops called go to ``call_log``."""
    result = subprocess.run(
        [sys.executable, str(script), *arguments],
        input=json.dumps(stdin),
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "VLLM_NPU_DEVICE": "ascend-standin",
            "VLLM_NPU_STANDIN_CALL_LOG": str(call_log),
            **(env or {}),
        },
        timeout=timeout,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def _token_ids(output: str) -> list[list[int]]:
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@pytest.mark.parametrize("arch", ["llama", pytest.param("qwen2", marks=pytest.mark.extended)])
def test_greedy_matches_transformers_on_ascend_path(
    arch: str, tiny_model_dir, tmp_path: Path
) -> None:
    model = tiny_model_dir(TinyModelSpec(arch=arch))
    prompts = clear_greedy_prompts(model)
    expected = hf_greedy_generate(model, prompts, MAX_NEW_TOKENS, dtype=torch.float16)
    call_log = tmp_path / "calls.txt"

    output = generate_on_ascend_path(model, prompts, call_log, dtype="float16")

    assert "KV cache block size 128" in output
    # The LLM process never touches the NPU runtime (torch_npu allows one
    # initialisation per process; only the workers may do it).
    assert "FRONTEND_NPU_RUNTIME initialized=False devices=[]" in output
    assert set(call_log.read_text().split()) >= ASCEND_OPS, "an Ascend op never ran"
    if importlib.util.find_spec("vllm.ir") is not None:
        # vLLM IR's norms prefer our kernels (vllm_npu.worker.ir_kernels) on this backend.
        assert "rms_norm=['npu', 'native']" in output, "vLLM IR norms do not use ours"
        assert "fused_add_rms_norm=['npu', 'native']" in output
    assert _token_ids(output) == expected


REFUSAL_SCRIPT = """
import sys
from vllm.engine.arg_utils import EngineArgs
for model in sys.argv[1:]:
    try:
        EngineArgs(model=model, dtype="float16", enforce_eager=True).create_engine_config()
    except ValueError as error:
        print("REFUSED " + str(error).replace(chr(10), " | "))
    else:
        print("ACCEPTED " + model)
"""


def test_models_beyond_the_kernels_limits_are_refused_at_start_up(tiny_model_dir) -> None:
    """Head size 512, 128 query heads per KV head, a head dim of 24: the ascend
    kernels cannot run them, and the engine configuration (in the front end, before
    any worker starts) refuses each in one line that names the limit."""
    specs = {
        "head_size 512 (_npu_paged_attention takes at most 256)": TinyModelSpec(
            hidden_size=1024, num_heads=2, num_kv_heads=1
        ),
        "128 query heads per 1 KV heads (a ratio of 128; npu_fused_infer_attention_score "
        "takes at most 64)": TinyModelSpec(hidden_size=2048, num_heads=128, num_kv_heads=1),
        "head_size 24 (npu_fused_infer_attention_score needs a multiple of 16)": TinyModelSpec(
            hidden_size=96, num_heads=4, num_kv_heads=2
        ),
    }
    models = [str(tiny_model_dir(spec)) for spec in specs.values()]
    env = {**os.environ, "VLLM_NPU_DEVICE": "ascend-standin"}
    result = subprocess.run(
        [sys.executable, "-c", REFUSAL_SCRIPT, *models],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    verdicts = [
        line for line in result.stdout.splitlines() if line.startswith(("REFUSED", "ACCEPTED"))
    ]
    assert len(verdicts) == len(specs), result.stdout + result.stderr[-2000:]
    for limit, verdict in zip(specs, verdicts, strict=True):
        # vLLM wraps the platform's ValueError in its config validation error; our
        # message is one of its lines.
        assert verdict.startswith("REFUSED "), verdict
        sentence = f"vllm-npu: attention backend 'npu' cannot run this model ({limit})"
        assert any(sentence in line for line in verdict.split(" | ")), verdict
