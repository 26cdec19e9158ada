"""End-to-end helpers: a vLLM engine through the plugin, and its greedy outputs."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest


@contextmanager
def vllm_engine(model: str, **engine_args: Any) -> Iterator[Any]:
    """A ``vllm.LLM`` on the plugin's host backend, shut down on exit."""
    from vllm import LLM

    defaults: dict[str, Any] = dict(
        dtype="float32",
        enforce_eager=True,
        max_model_len=512,
        max_num_seqs=16,
        seed=0,
    )
    llm = LLM(model=model, **{**defaults, **engine_args})
    try:
        yield llm
    finally:
        engine = getattr(llm, "llm_engine", None)
        shutdown = getattr(engine, "shutdown", None) or getattr(
            getattr(engine, "engine_core", None), "shutdown", None
        )
        if shutdown is not None:
            shutdown()
        del llm
        gc.collect()


def greedy_token_ids(
    llm: Any, prompts: Sequence[str], max_new_tokens: int
) -> list[list[int]]:
    """Greedy completions, never stopping early, as token ids."""
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, ignore_eos=True)
    outputs = llm.generate(list(prompts), params, use_tqdm=False)
    return [list(output.outputs[0].token_ids) for output in outputs]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
