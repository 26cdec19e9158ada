"""MoE throughput of the host backend: the reference MoE kernels alone, and greedy
generation of a tiny MoE model through vLLM + vllm-npu beside transformers.

Kernels: one MoE layer (routing + routed experts) on random inputs, tokens per
second for several batch sizes and two shapes (Mixtral-like 8 experts top-2, and
DeepSeek-like 64 experts top-6 in 8 groups with sigmoid scores). Engine: as
``throughput.py``, on ``--arch`` (mixtral, qwen3_moe, glm4_moe). Run from the repo
root: ``python benchmarks/moe_throughput.py``.
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

from vllm_npu.testing import (  # noqa: E402
    DEFAULT_PROMPTS,
    MOE_ARCHITECTURES,
    TinyModelSpec,
    build_tiny_model,
)
from vllm_npu.worker.kernels import MoERouting, get_moe_kernels  # noqa: E402

SHAPES = {
    "8 experts top-2, hidden 512, expert 1024": (
        8,
        512,
        1024,
        MoERouting(top_k=2, renormalize=True),
    ),
    "64 experts top-6 (8 groups), hidden 512, expert 256": (
        64,
        512,
        256,
        MoERouting(
            top_k=6,
            scoring="sigmoid",
            renormalize=True,
            num_expert_group=8,
            topk_group=4,
            routed_scaling_factor=2.5,
        ),
    ),
}
BATCHES = (1, 16, 256, 2048)


def kernel_tokens_per_second(
    experts: int, hidden: int, intermediate: int, routing: MoERouting, tokens: int
) -> float:
    kernels = get_moe_kernels("reference")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, hidden, generator=g)
    logits = torch.randn(tokens, experts, generator=g)
    bias = torch.randn(experts, generator=g) * 0.1 if routing.scoring == "sigmoid" else None
    w13 = torch.randn(experts, 2 * intermediate, hidden, generator=g) * 0.05
    w2 = torch.randn(experts, hidden, intermediate, generator=g) * 0.05

    def layer() -> None:
        weights, ids = kernels.select_experts(logits, routing, correction_bias=bias)
        kernels.fused_experts(x, w13, w2, weights, ids)

    layer()
    repeats, start = 0, time.perf_counter()
    while repeats < 3 or time.perf_counter() - start < 1.0:
        layer()
        repeats += 1
    return tokens * repeats / (time.perf_counter() - start)


def engine_tokens_per_second(model: Path, prompts: list[str], max_tokens: int) -> float:
    from vllm import LLM, SamplingParams

    llm = LLM(
        model=str(model),
        dtype="float32",
        max_model_len=512,
        max_num_seqs=len(prompts),
        enforce_eager=True,
        seed=0,
    )
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    llm.generate(prompts[:2], SamplingParams(max_tokens=2), use_tqdm=False)  # warm-up
    start = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    llm.llm_engine.engine_core.shutdown()
    return sum(len(o.outputs[0].token_ids) for o in outputs) / elapsed


def transformers_tokens_per_second(model: Path, prompts: list[str], max_tokens: int) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
    hf = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    hf.generation_config = GenerationConfig(
        do_sample=False, num_beams=1, pad_token_id=tokenizer.pad_token_id
    )
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        hf.generate(**batch, max_new_tokens=2)
        start = time.perf_counter()
        output = hf.generate(**batch, max_new_tokens=max_tokens)
        elapsed = time.perf_counter() - start
    return (output.shape[1] - batch["input_ids"].shape[1]) * len(prompts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", choices=MOE_ARCHITECTURES, default="mixtral")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--kernels-only", action="store_true")
    args = parser.parse_args()

    print(f"reference MoE kernels, float32, {torch.get_num_threads()} thread(s): tokens/s")
    print(f"{'shape':<56}" + "".join(f"{b:>10}" for b in BATCHES))
    for label, (experts, hidden, intermediate, routing) in SHAPES.items():
        rates = [
            kernel_tokens_per_second(experts, hidden, intermediate, routing, b) for b in BATCHES
        ]
        print(f"{label:<56}" + "".join(f"{r:>10.0f}" for r in rates))
    if args.kernels_only:
        return

    model = build_tiny_model(
        Path(tempfile.gettempdir()) / "vllm-npu-bench" / args.arch, TinyModelSpec(arch=args.arch)
    )
    prompts = [f"{DEFAULT_PROMPTS[i % len(DEFAULT_PROMPTS)]} ({i})" for i in range(args.prompts)]
    hf = transformers_tokens_per_second(model, prompts, args.max_tokens)
    plugin = engine_tokens_per_second(model, prompts, args.max_tokens)
    print(f"\n{args.prompts} prompts x {args.max_tokens} new tokens, {args.arch}, float32")
    print(f"{'transformers generate (batched)':<44}{hf:>10.1f}")
    print(f"{'vLLM + vllm-npu host (eager)':<44}{plugin:>10.1f}")
    print(f"{'ratio vLLM / transformers':<44}{plugin / hf:>10.2f}")


if __name__ == "__main__":
    main()
