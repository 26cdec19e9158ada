"""Greedy generation throughput: vLLM + vllm-npu (host backend) vs transformers.

Same tiny checkpoint, same prompts (32 x 64 new tokens by default); prints
generated tokens per second of each side by side. Run with ``./dev bench``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_NPU_DEVICE", "host")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("VLLM_NPU_HOST_KV_CACHE_GB", "0.5")

import torch  # noqa: E402

from vllm_npu.testing import DEFAULT_PROMPTS, TinyModelSpec, build_tiny_model  # noqa: E402


def make_prompts(count: int) -> list[str]:
    return [f"{DEFAULT_PROMPTS[i % len(DEFAULT_PROMPTS)]} ({i})" for i in range(count)]


def transformers_tokens_per_second(
    model_path: Path, prompts: list[str], max_tokens: int, threads: int
) -> float:
    """One batched, left-padded greedy ``generate`` over all prompts."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    model.generation_config = GenerationConfig(
        do_sample=False, num_beams=1, pad_token_id=tokenizer.pad_token_id
    )
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        model.generate(**batch, max_new_tokens=2)  # warm-up
        start = time.perf_counter()
        output = model.generate(**batch, max_new_tokens=max_tokens)
        elapsed = time.perf_counter() - start
    generated = (output.shape[1] - batch["input_ids"].shape[1]) * len(prompts)
    return generated / elapsed


def vllm_tokens_per_second(
    model_path: Path, prompts: list[str], max_tokens: int, enforce_eager: bool
) -> float:
    from vllm import LLM, SamplingParams

    llm = LLM(
        model=str(model_path),
        dtype="float32",
        max_model_len=512,
        max_num_seqs=len(prompts),
        enforce_eager=enforce_eager,
        seed=0,
    )
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    llm.generate(prompts[:2], SamplingParams(max_tokens=2), use_tqdm=False)  # warm-up
    start = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    llm.llm_engine.engine_core.shutdown()
    generated = sum(len(output.outputs[0].token_ids) for output in outputs)
    return generated / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", choices=("llama", "qwen2"), default="llama")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--hf-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--compile",
        action="store_true",
        help="let vLLM compile the model (inductor) instead of running eagerly",
    )
    args = parser.parse_args()

    model = build_tiny_model(
        Path(tempfile.gettempdir()) / "vllm-npu-bench" / args.arch,
        TinyModelSpec(arch=args.arch),
    )
    prompts = make_prompts(args.prompts)
    hf = transformers_tokens_per_second(model, prompts, args.max_tokens, args.hf_threads)
    plugin = vllm_tokens_per_second(model, prompts, args.max_tokens, not args.compile)

    mode = "compiled" if args.compile else "eager"
    print(f"\n{args.prompts} prompts x {args.max_tokens} new tokens, {args.arch}, float32")
    print(f"{'engine':<44}{'tokens/s':>10}")
    hf_label = f"transformers generate (batched, {args.hf_threads} threads)"
    print(f"{hf_label:<44}{hf:>10.1f}")
    print(f"{'vLLM + vllm-npu host (' + mode + ')':<44}{plugin:>10.1f}")
    print(f"{'ratio vLLM / transformers':<44}{plugin / hf:>10.2f}")


if __name__ == "__main__":
    main()
