"""LoRA on the host backend: several adapters and the base model in one batch, each
request equal token for token to transformers with that adapter merged into the
weights."""

from __future__ import annotations

from typing import Any

import pytest

from vllm_npu.testing import DEFAULT_PROMPTS, TinyModelSpec, hf_greedy_generate
from vllm_npu.testing.lora_adapters import build_lora_adapter, merge_lora_adapter

from .conftest import vllm_engine

MAX_NEW_TOKENS = 16
NUM_ADAPTERS = 3


def _punica_cpu_ops(worker: Any) -> dict[str, Any]:
    """Runs inside the worker process (collective_rpc): whether the bgmv_expand that
    PunicaWrapperCPU calls, and vLLM's own one under it, give a token without an
    adapter (index -1) an adapter (vLLM's do up to 0.32), and which patch replaced it."""
    import torch
    from vllm.lora.punica_wrapper import punica_cpu

    def adds_an_adapter(expand: Any) -> bool:
        output = torch.zeros(1, 2)
        expand(torch.ones(1, 1), torch.ones(1, 2, 1), output, torch.tensor([-1]))
        return bool((output != 0).any())

    called = punica_cpu.bgmv_expand
    return {
        "called_adds": adds_an_adapter(called),
        "vllm_adds": adds_an_adapter(getattr(called, "__wrapped__", called)),
        "patch": getattr(called, "__vllm_npu_patch__", None),
    }


@pytest.mark.support("lora", "host")
def test_several_adapters_and_the_base_model_in_one_batch(
    tiny_model_dir, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    base = tiny_model_dir(TinyModelSpec(arch="llama"))
    adapters = [
        build_lora_adapter(base, tmp_path / f"adapter-{index}", seed=index + 1)
        for index in range(NUM_ADAPTERS)
    ]
    # Each prompt runs once without an adapter and once with each adapter.
    prompts = list(DEFAULT_PROMPTS[:3])
    choices: list[int | None] = [None, *range(NUM_ADAPTERS)]
    batch = [(prompt, choice) for prompt in prompts for choice in choices]

    references = {None: base} | {
        index: merge_lora_adapter(base, adapter, tmp_path / f"merged-{index}")
        for index, adapter in enumerate(adapters)
    }
    expected = {
        choice: hf_greedy_generate(references[choice], prompts, MAX_NEW_TOKENS)
        for choice in choices
    }
    for position in range(len(prompts)):
        continuations = {tuple(expected[choice][position]) for choice in choices}
        assert len(continuations) == len(choices), "an adapter does not change the output"

    requests = [
        None
        if choice is None
        else LoRARequest(f"adapter-{choice}", choice + 1, str(adapters[choice]))
        for _, choice in batch
    ]
    monkeypatch.setenv("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # to send _punica_cpu_ops
    params = SamplingParams(temperature=0.0, max_tokens=MAX_NEW_TOKENS, ignore_eos=True)
    # Fewer adapter slots than adapters: the batch also swaps adapters in and out.
    with vllm_engine(str(base), enable_lora=True, max_loras=2, max_lora_rank=8) as llm:
        outputs = llm.generate(
            [prompt for prompt, _ in batch], params, lora_request=requests, use_tqdm=False
        )

        (ops,) = llm.collective_rpc(_punica_cpu_ops)

    assert not ops["called_adds"], "the LoRA ops give tokens without an adapter an adapter"
    # Our patch replaces vLLM's ops exactly where they have the bug.
    assert ops["patch"] == ("host-lora-punica-cpu-bgmv-expand" if ops["vllm_adds"] else None)
    generated = [list(output.outputs[0].token_ids) for output in outputs]
    assert generated == [
        expected[choice][prompts.index(prompt)] for prompt, choice in batch
    ]
