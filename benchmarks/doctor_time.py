"""``vllm-npu doctor`` against ``import vllm``: wall time of each, in fresh processes.

The doctor must not take longer than importing vLLM does. Runs each command
``--runs`` times alternately (so machine load hits both alike) and prints the
median and range of each; exits 1 when the doctor's median is the larger.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=False, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_NPU_DEVICE", "host")
    doctor = shutil.which("vllm-npu") or sys.exit("vllm-npu is not on PATH: run ./dev setup")
    commands = {
        "import vllm": [sys.executable, "-c", "import vllm"],
        "vllm-npu doctor": [doctor, "doctor"],
        "vllm-npu doctor --load": [doctor, "doctor", "--load"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, command in commands.items():
            times[name].append(wall_time(command))
    for name, values in times.items():
        print(
            f"{name:<24} median {statistics.median(values):6.2f} s  "
            f"(min {min(values):.2f}, max {max(values):.2f}, {len(values)} runs)"
        )
    faster = statistics.median(times["vllm-npu doctor"]) <= statistics.median(
        times["import vllm"]
    )
    print("doctor within the import-vllm budget" if faster else "doctor is slower than import vllm")
    return 0 if faster else 1


if __name__ == "__main__":
    raise SystemExit(main())
