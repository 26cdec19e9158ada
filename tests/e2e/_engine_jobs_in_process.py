"""One vLLM engine in a process of its own running a list of jobs, its results printed
as JSON: for settings (such as the device backend) that vLLM resolves once per process,
and to check several features on one engine.

Usage: python _engine_jobs_in_process.py < request.json, the request being
``{"model": path, "engine_args": {...}, "jobs": [job, ...]}``. Jobs run in order; each
has a ``name`` and a ``kind``:

- ``generate``: ``prompts``, ``sampling`` (``SamplingParams`` keywords) and optionally
  ``structured_outputs`` (``StructuredOutputsParams`` keywords); per prompt its prompt
  token ids, token ids, text, ``logprobs`` (per step, ``[[token, logprob], ...]``) and
  ``prompt_logprobs`` (per position, the same or None);
- ``beam_search``: ``prompts``, ``beam_width``, ``max_tokens``; per prompt the beams'
  token ids (prompt and generated), best first;
- ``embed``: ``prompts``; per prompt its embedding;
- ``metrics``: ``names``; each counter's value at that point (summed over labels).

Prints ``RESULT <json>``: job name -> its result.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from conftest import vllm_engine  # noqa: E402


def _logprobs(positions: Any) -> list[Any] | None:
    if positions is None:
        return None
    return [
        None if step is None else [[token, entry.logprob] for token, entry in step.items()]
        for step in positions
    ]


def _generate(llm: Any, job: dict[str, Any]) -> list[dict[str, Any]]:
    from vllm import SamplingParams

    sampling = dict(job["sampling"])
    if job.get("structured_outputs") is not None:
        from vllm.sampling_params import StructuredOutputsParams

        sampling["structured_outputs"] = StructuredOutputsParams(**job["structured_outputs"])
    outputs = llm.generate(job["prompts"], SamplingParams(**sampling), use_tqdm=False)
    return [
        {
            "prompt_token_ids": list(output.prompt_token_ids),
            "token_ids": list(output.outputs[0].token_ids),
            "text": output.outputs[0].text,
            "logprobs": _logprobs(output.outputs[0].logprobs),
            "prompt_logprobs": _logprobs(output.prompt_logprobs),
        }
        for output in outputs
    ]


def _beam_search(llm: Any, job: dict[str, Any]) -> list[list[list[int]]]:
    from vllm.sampling_params import BeamSearchParams

    params = BeamSearchParams(
        beam_width=job["beam_width"], max_tokens=job["max_tokens"], ignore_eos=True
    )
    outputs = llm.beam_search([{"prompt": prompt} for prompt in job["prompts"]], params)
    return [[list(sequence.tokens) for sequence in output.sequences] for output in outputs]


def _embed(llm: Any, job: dict[str, Any]) -> list[list[float]]:
    return [list(output.outputs.embedding) for output in llm.embed(job["prompts"], use_tqdm=False)]


def _metrics(llm: Any, job: dict[str, Any]) -> dict[str, float]:
    values = dict.fromkeys(job["names"], 0.0)
    for metric in llm.get_metrics():
        if metric.name in values:
            values[metric.name] += getattr(metric, "value", 0) or 0
    return values


JOBS = {"generate": _generate, "beam_search": _beam_search, "embed": _embed, "metrics": _metrics}


def main() -> None:
    request = json.load(sys.stdin)
    results: dict[str, Any] = {}
    with vllm_engine(request["model"], **request["engine_args"]) as llm:
        for job in request["jobs"]:
            results[job["name"]] = JOBS[job["kind"]](llm, job)
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
