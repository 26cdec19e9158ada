"""vLLM's sampling features through the plugin, on one engine (host backend, float32,
tiny llama): logprobs and prompt logprobs equal transformers' log-softmax, greedy
decoding with penalties equals a transformers reference applying vLLM's penalty
rules, seeded sampling reproduces, beam search equals transformers' beam search, and
structured output (choice, regex) holds to its constraint; a second engine
(``runner="pooling"``) embeds as transformers does.

The engine prefills at most ``CHUNK_TOKENS`` tokens a step, so prompts batched
together are prefilled in chunks and every check here runs across chunked prefills.
A seeded request whose prefill is split draws (and drops) a token for each partial
chunk; the plugin's runner gives its CPU generator back the state it had before
that draw (vLLM's own rewind moves a Philox offset that a CPU generator lacks), so
the seeded test compares requests prefilled in chunks with the same requests
prefilled in one step."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from vllm_npu.testing import DEFAULT_PROMPTS, TinyModelSpec, hf_prompt_token_ids
from vllm_npu.testing.sampling_reference import (
    Penalties,
    load_reference_model,
    next_token_log_probs,
    penalized_greedy,
    transformers_beam_search,
)

from .conftest import vllm_engine

PROMPTS = list(DEFAULT_PROMPTS[:4])
MAX_NEW_TOKENS = 8
TOP_LOGPROBS = 3
LOGPROB_TOLERANCE = 1e-4
"""float32 log-probabilities of two implementations of the same model."""
PENALTIES = dict(repetition_penalty=1.5, presence_penalty=0.7, frequency_penalty=0.4)
BEAM_WIDTH = 3
CHUNK_TOKENS = 32
"""max_num_batched_tokens: each prompt alone fits one step, the prompts together do not."""


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> Path:
    return tiny_model_dir(TinyModelSpec(arch="llama"))


@pytest.fixture(scope="module")
def llm(model: Path) -> Iterator[Any]:
    with vllm_engine(str(model), max_model_len=256, max_num_batched_tokens=CHUNK_TOKENS) as engine:
        yield engine


@pytest.fixture(scope="module")
def hf_model(model: Path) -> Any:
    return load_reference_model(model)


@pytest.fixture(scope="module")
def prompt_ids(model: Path) -> list[list[int]]:
    return hf_prompt_token_ids(model, PROMPTS)


@pytest.fixture(scope="module")
def greedy_with_logprobs(llm: Any) -> list[Any]:
    from vllm import SamplingParams

    params = SamplingParams(
        temperature=0.0,
        max_tokens=MAX_NEW_TOKENS,
        ignore_eos=True,
        logprobs=TOP_LOGPROBS,
        prompt_logprobs=1,
    )
    return llm.generate(PROMPTS, params, use_tqdm=False)


@pytest.mark.support("logprobs", "host")
def test_logprobs_match_transformers(
    greedy_with_logprobs: list[Any], hf_model: Any, prompt_ids: list[list[int]]
) -> None:
    for output, prompt in zip(greedy_with_logprobs, prompt_ids, strict=True):
        completion = output.outputs[0]
        generated = list(completion.token_ids)
        reference = next_token_log_probs(hf_model, prompt + generated)[len(prompt) - 1 : -1]
        assert len(completion.logprobs) == len(generated) == MAX_NEW_TOKENS
        for step, (token, logprobs) in enumerate(zip(generated, completion.logprobs, strict=True)):
            expected = reference[step]
            assert token == int(expected.argmax()), "greedy token is not transformers' argmax"
            top = expected.topk(TOP_LOGPROBS).indices.tolist()
            assert set(top) <= set(logprobs), (step, top, sorted(logprobs))
            for token_id, logprob in logprobs.items():
                assert math.isclose(
                    logprob.logprob, float(expected[token_id]), abs_tol=LOGPROB_TOLERANCE
                ), (step, token_id, logprob.logprob, float(expected[token_id]))


@pytest.mark.support("prompt_logprobs", "host")
def test_prompt_logprobs_match_transformers(
    greedy_with_logprobs: list[Any], hf_model: Any, prompt_ids: list[list[int]]
) -> None:
    for output, prompt in zip(greedy_with_logprobs, prompt_ids, strict=True):
        assert list(output.prompt_token_ids) == prompt
        reference = next_token_log_probs(hf_model, prompt)
        assert output.prompt_logprobs[0] is None and len(output.prompt_logprobs) == len(prompt)
        for position in range(1, len(prompt)):
            logprobs = output.prompt_logprobs[position]
            expected = float(reference[position - 1, prompt[position]])
            assert math.isclose(
                logprobs[prompt[position]].logprob, expected, abs_tol=LOGPROB_TOLERANCE
            ), (position, logprobs[prompt[position]].logprob, expected)


@pytest.mark.support("penalties", "host")
def test_penalties_match_a_transformers_reference(
    llm: Any, hf_model: Any, prompt_ids: list[list[int]]
) -> None:
    from vllm import SamplingParams

    params = SamplingParams(
        temperature=0.0, max_tokens=2 * MAX_NEW_TOKENS, ignore_eos=True, **PENALTIES
    )
    outputs = llm.generate(PROMPTS, params, use_tqdm=False)
    generated = [list(output.outputs[0].token_ids) for output in outputs]
    expected = [
        list(penalized_greedy(hf_model, p, 2 * MAX_NEW_TOKENS, Penalties(**PENALTIES)).token_ids[0])
        for p in prompt_ids
    ]
    unpenalized = llm.generate(
        PROMPTS,
        SamplingParams(temperature=0.0, max_tokens=2 * MAX_NEW_TOKENS, ignore_eos=True),
        use_tqdm=False,
    )
    assert generated == expected
    assert generated != [list(o.outputs[0].token_ids) for o in unpenalized], (
        "the penalties changed nothing: this check cannot tell them from no penalties"
    )


@pytest.mark.support("seeded_sampling", "host")
def test_seeded_sampling_reproduces_across_chunked_prefills(
    llm: Any, prompt_ids: list[list[int]]
) -> None:
    from vllm import SamplingParams

    salts = itertools.count()

    def sample(prompts: list[str], seed: int) -> list[list[int]]:
        params = SamplingParams(temperature=1.0, max_tokens=16, ignore_eos=True, seed=seed)
        # A fresh cache salt per call: no prompt is shortened by a prefix-cache hit.
        salt = f"seeded-{next(salts)}"
        inputs = [{"prompt": prompt, "cache_salt": salt} for prompt in prompts]
        outputs = llm.generate(inputs, params, use_tqdm=False)
        return [list(output.outputs[0].token_ids) for output in outputs]

    lengths = [len(ids) for ids in prompt_ids] * 2
    assert max(lengths) <= CHUNK_TOKENS, "a prompt alone would be prefilled in chunks"
    assert sum(lengths) > CHUNK_TOKENS and CHUNK_TOKENS not in itertools.accumulate(lengths), (
        "the first step of the batch would not split a prefill"
    )
    alone = [sample([prompt], 7)[0] for prompt in PROMPTS]
    # Each prompt twice in one batch: the first step fills up mid-prompt, so some
    # prefills are split, and the same seed still samples what the prompt alone did.
    chunked, again, other = (sample(PROMPTS + PROMPTS, seed) for seed in (7, 7, 8))
    assert chunked == alone + alone
    assert again == chunked
    assert other != chunked, "a different seed sampled the same tokens"


@pytest.mark.support("beam_search", "host")
def test_beam_search_matches_transformers(
    llm: Any, hf_model: Any, prompt_ids: list[list[int]]
) -> None:
    from vllm.sampling_params import BeamSearchParams

    params = BeamSearchParams(beam_width=BEAM_WIDTH, max_tokens=MAX_NEW_TOKENS, ignore_eos=True)
    outputs = llm.beam_search([{"prompt": p} for p in PROMPTS], params)
    for output, prompt in zip(outputs, prompt_ids, strict=True):
        expected = transformers_beam_search(hf_model, prompt, BEAM_WIDTH, MAX_NEW_TOKENS)
        generated = [list(sequence.tokens[len(prompt) :]) for sequence in output.sequences]
        assert generated == expected


@pytest.mark.support("structured_output", "host")
def test_structured_output_holds_to_its_constraint(llm: Any) -> None:
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    choices = ["sunny", "cloudy", "raining"]
    pattern = r"[a-z]{2,5}( [a-z]{2,5}){2}\."
    unconstrained = SamplingParams(temperature=0.0, max_tokens=24)
    constraints = {
        "choice": StructuredOutputsParams(choice=choices),
        "regex": StructuredOutputsParams(regex=pattern),
    }
    prompts = PROMPTS[:2]
    free = [o.outputs[0].text for o in llm.generate(prompts, unconstrained, use_tqdm=False)]
    for kind, constraint in constraints.items():
        params = SamplingParams(temperature=0.0, max_tokens=24, structured_outputs=constraint)
        texts = [o.outputs[0].text for o in llm.generate(prompts, params, use_tqdm=False)]
        if kind == "choice":
            assert all(text in choices for text in texts), texts
            assert not any(text in choices for text in free), free
        else:
            assert all(re.fullmatch(pattern, text) for text in texts), texts
            assert not any(re.fullmatch(pattern, text) for text in free), free


EMBEDDING_TOLERANCE = 1e-4


@pytest.mark.support("pooling", "host")
def test_embeddings_match_transformers(model: Path, prompt_ids: list[list[int]]) -> None:
    """``runner="pooling"`` on the decoder: vLLM's default embedding of a causal LM is
    the last token's final hidden state, L2-normalised."""
    from transformers import AutoModel

    with vllm_engine(str(model), runner="pooling", max_model_len=256) as pooling:
        outputs = pooling.embed(PROMPTS, use_tqdm=False)
    base = AutoModel.from_pretrained(model, dtype=torch.float32, attn_implementation="eager")
    for output, prompt in zip(outputs, prompt_ids, strict=True):
        with torch.inference_mode():
            hidden = base(torch.tensor([prompt])).last_hidden_state[0, -1]
        expected = torch.nn.functional.normalize(hidden, dim=-1)
        embedding = torch.tensor(output.outputs.embedding)
        assert embedding.shape == expected.shape
        assert torch.allclose(embedding, expected, atol=EMBEDDING_TOLERANCE), (
            float((embedding - expected).abs().max())
        )
