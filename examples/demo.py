"""Demo: a tiny model built offline, generated through vLLM on the vllm-npu host backend.

Prints the completions and whether their tokens equal Hugging Face transformers'
greedy decoding on the same checkpoint. Run with ``./dev demo``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("VLLM_NPU_DEVICE", "host")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("VLLM_NPU_HOST_KV_CACHE_GB", "0.5")

from vllm_npu.testing import (  # noqa: E402
    DEFAULT_PROMPTS,
    TinyModelSpec,
    build_tiny_model,
    hf_greedy_generate,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", choices=("llama", "qwen2"), default="llama")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "vllm-npu-demo",
        help="where the tiny model is built (reused when already there)",
    )
    args = parser.parse_args()

    model = build_tiny_model(args.model_dir / args.arch, TinyModelSpec(arch=args.arch))
    prompts = list(DEFAULT_PROMPTS[:4])

    from vllm import LLM, SamplingParams

    llm = LLM(model=str(model), dtype="float32", max_model_len=512, enforce_eager=True, seed=0)
    params = SamplingParams(temperature=0.0, max_tokens=args.max_tokens, ignore_eos=True)
    outputs = llm.generate(prompts, params, use_tqdm=False)
    llm.llm_engine.engine_core.shutdown()

    expected = hf_greedy_generate(model, prompts, args.max_tokens)
    matches = 0
    print(f"\nvLLM {__import__('vllm').__version__} + vllm-npu (host backend), model {model}\n")
    for prompt, output, reference in zip(prompts, outputs, expected, strict=True):
        same = list(output.outputs[0].token_ids) == reference
        matches += same
        print(f"prompt:     {prompt!r}")
        print(f"completion: {output.outputs[0].text!r}")
        print(f"matches transformers: {'yes' if same else 'NO'}\n")
    print(f"{matches}/{len(prompts)} completions identical to transformers' greedy decoding")
    return 0 if matches == len(prompts) else 1


if __name__ == "__main__":
    sys.exit(main())
