"""Where the engine's step time goes on our host backend: one timed run, in process.

Wraps the functions of each part of a step with wall-clock timers (self time: a part
called inside another is not counted twice), runs the workload of the side-by-side
benchmark once eagerly after a warm-up, and prints each part's share of the time
spent in engine steps. Runs in the environment with vLLM + vllm-npu; the engine runs
in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0) so that scheduler and model
runner are both timed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
os.environ.setdefault("VLLM_NPU_DEVICE", "host")

PARTS = (
    "attention",
    "linear layers",
    "other model layers",
    "sampler",
    "scheduling and metadata",
    "other",
)


class SelfTimers:
    """Wall time per part, each call's time minus that of the timed calls inside it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._children: list[float] = []
        self.enabled = False

    def wrap(self, owner: type, name: str, part: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.enabled:
                return original(*args, **kwargs)
            self._children.append(0.0)
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                inner = self._children.pop()
                self.seconds[part] += elapsed - inner
                if self._children:
                    self._children[-1] += elapsed

        setattr(owner, name, timed)


def instrument(timers: SelfTimers) -> None:
    from vllm.model_executor.layers.linear import UnquantizedLinearMethod
    from vllm.model_executor.layers.vocab_parallel_embedding import UnquantizedEmbeddingMethod
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.engine.core import EngineCore
    from vllm.v1.sample.sampler import Sampler

    from vllm_npu.attention.backend import NPUAttentionImpl, NPUAttentionMetadataBuilder
    from vllm_npu.worker.host_model_runner import HostModelRunner
    from vllm_npu.worker.packed_linear import PackedLinearMethod

    wrapped: list[tuple[type, str, str]] = [
        (EngineCore, "step", "other"),
        (HostModelRunner, "_model_forward", "other model layers"),
        (NPUAttentionImpl, "forward", "attention"),
        (NPUAttentionImpl, "do_kv_cache_update", "attention"),
        (UnquantizedLinearMethod, "apply", "linear layers"),
        (PackedLinearMethod, "apply", "linear layers"),
        (UnquantizedEmbeddingMethod, "apply", "linear layers"),
        (Sampler, "forward", "sampler"),
        (Scheduler, "schedule", "scheduling and metadata"),
        (Scheduler, "update_from_output", "scheduling and metadata"),
        (NPUAttentionMetadataBuilder, "build", "scheduling and metadata"),
    ]
    for name in (
        "_update_states",
        "_prepare_inputs",
        "_build_attention_metadata",
        "_preprocess",
        "_bookkeeping_sync",
    ):
        if hasattr(HostModelRunner, name):
            wrapped.append((HostModelRunner, name, "scheduling and metadata"))
    for owner, name, part in wrapped:
        timers.wrap(owner, name, part)


def report(timers: SelfTimers, elapsed: float, generated: int, steps: int) -> None:
    total = sum(timers.seconds.values())
    print(f"{generated} tokens in {elapsed:.2f} s ({generated / elapsed:.1f} tok/s, "
          f"timers on), {steps} steps, {1e3 * total / max(steps, 1):.2f} ms per step")
    print(f"{'part':<28}{'ms/step':>9}{'share':>8}")
    for part in PARTS:
        seconds = timers.seconds.get(part, 0.0)
        print(f"{part:<28}{1e3 * seconds / max(steps, 1):>9.3f}{seconds / total:>8.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompts-file", required=True)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    from vllm import LLM, SamplingParams
    from vllm.v1.engine.core import EngineCore

    timers = SelfTimers()
    instrument(timers)
    steps = 0
    step: Callable[..., Any] = EngineCore.step

    def counted_step(self: EngineCore) -> Any:
        nonlocal steps
        steps += timers.enabled
        return step(self)

    EngineCore.step = counted_step  # type: ignore[method-assign]

    with open(args.prompts_file, encoding="utf-8") as handle:
        prompts = json.load(handle)
    llm = LLM(
        model=args.model,
        dtype="float32",
        max_model_len=512,
        max_num_seqs=len(prompts),
        enforce_eager=True,
        seed=0,
    )
    params = SamplingParams(temperature=0.0, max_tokens=args.max_tokens, ignore_eos=True)
    llm.generate(prompts, params, use_tqdm=False)
    timers.enabled = True
    start = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    timers.enabled = False
    report(timers, elapsed, sum(len(o.outputs[0].token_ids) for o in outputs), steps)


if __name__ == "__main__":
    main()
