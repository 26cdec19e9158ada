"""vLLM's single-engine features on the Ascend code path (``VLLM_NPU_DEVICE=ascend-standin``:
the ascend kernel set, model runner, KV layout and block size 128 over the torch_npu
stand-in), in float16 against transformers.

One engine (tiny llama, prefix caching on) runs every sampling feature: logprobs and
prompt logprobs, penalties, seeded sampling, beam search, structured output, and
prefix caching with a prefix longer than one 128-token block. The decisions compared
(greedy tokens, penalized greedy tokens, beams) are checked only on prompts whose
float32 decisions are clear of float16 rounding (``CLEAR_MARGIN``). Two more engines
have configurations of their own: ngram speculative decoding, whose verification
steps give each request several query tokens (``npu_fused_infer_attention_score``,
block size a multiple of 128), and ``runner="pooling"`` embeddings. All are in the
extended tier: the default run already starts engines on this path
(test_ascend_path.py).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from vllm_npu.testing import DEFAULT_PROMPTS, TinyModelSpec, hf_greedy_margins, hf_prompt_token_ids
from vllm_npu.testing.repeating_models import build_repeating_model
from vllm_npu.testing.sampling_reference import (
    Penalties,
    beam_search,
    load_reference_model,
    next_token_log_probs,
    penalized_greedy,
    transformers_beam_search,
)
from vllm_npu.testing.session_calls import CALL_SPECS_ENV

from .test_ascend_path import clear_of_rounding, run_on_ascend_path

pytestmark = pytest.mark.extended

SCRIPT = Path(__file__).with_name("_engine_jobs_in_process.py")
BLOCK_SIZE = 128
MAX_NEW_TOKENS = 8
LOGPROB_TOLERANCE = 0.1
"""float16 log-probabilities against transformers' float32 ones. A float16 run's
log-probabilities move by more than its argmax decisions do: most of the error is a
shift of the log-sum-exp that every token of a position shares. transformers' own
float16 run of this model is up to 0.08 from its float32 run on these short prompts
(0.27 on a 170-token one); this path was 0.07 from it (measured)."""
TOP_LOGPROBS = 3
PENALTIES = Penalties(repetition_penalty=1.5, presence_penalty=0.7, frequency_penalty=0.4)
BEAM_WIDTH = 2
BEAM_STEPS = 4
BEAM_MARGIN = 0.15
"""A beam decision compares cumulative log-probabilities of different sequences, whose
float16 errors do not cancel as the candidates of one step's logits do: transformers'
own float16 run moves these gaps by up to 0.07 on the candidate prompts (measured,
width 2, 4 steps), so decisions closer than twice that may go either way."""
SEEDED_TOKENS = 16
PREFIX_METRICS = ["vllm:prefix_cache_hits", "vllm:prefix_cache_queries"]


def call_specs(call_log: Path) -> Path:
    """Where ``run_engine_jobs`` has the stand-in write its calls' argument specs."""
    return call_log.with_suffix(".specs.jsonl")


def run_engine_jobs(
    model: Path, engine_args: dict[str, Any], jobs: list[dict[str, Any]], call_log: Path
) -> tuple[dict[str, Any], str]:
    """Run ``jobs`` in one stand-in engine in a process of its own: their results, and
    the process's output. Stand-in ops called go to ``call_log``; the calls' argument
    specs to ``call_specs(call_log)``, and from there to the session's recording (the
    conformance test checks them against the real schemas)."""
    specs = call_specs(call_log)
    request = {"model": str(model), "engine_args": engine_args, "jobs": jobs}
    try:
        output = run_on_ascend_path(
            SCRIPT, [], request, call_log, env={CALL_SPECS_ENV: str(specs)}, timeout=1200
        )
    finally:
        session_recording = os.environ.get(CALL_SPECS_ENV)
        if session_recording and specs.exists():
            with open(session_recording, "a") as recording:
                recording.write(specs.read_text())
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT ")), output


def _clear(prompts: list[str], margins: list[float], count: int) -> list[str]:
    return clear_of_rounding(prompts, margins, count)[:count]


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> Path:
    return tiny_model_dir(TinyModelSpec(arch="llama"))


@pytest.fixture(scope="module")
def hf_model(model: Path) -> Any:
    return load_reference_model(model)


@pytest.fixture(scope="module")
def cases(model: Path, hf_model: Any) -> dict[str, Any]:
    """The prompts of each check, chosen where the float32 decisions are clear."""
    candidates = list(DEFAULT_PROMPTS[:8])
    greedy = _clear(candidates, hf_greedy_margins(model, candidates, MAX_NEW_TOKENS), 4)
    candidate_ids = hf_prompt_token_ids(model, candidates)
    penalized = [
        penalized_greedy(hf_model, ids, 2 * MAX_NEW_TOKENS, PENALTIES) for ids in candidate_ids
    ]
    penalty_prompts = _clear(candidates, [d.margin for d in penalized], 3)
    beams = [beam_search(hf_model, ids, BEAM_WIDTH, BEAM_STEPS) for ids in candidate_ids]
    beam_prompts = [p for p, d in zip(candidates, beams, strict=True) if d.margin > BEAM_MARGIN]
    assert len(beam_prompts) >= 2, f"too few prompts with clear beams: {[d.margin for d in beams]}"
    # The shared prefix spans more than one KV block: full blocks are what is cached.
    shared = DEFAULT_PROMPTS[9]
    prefixed = [f"{shared} {suffix}" for suffix in DEFAULT_PROMPTS[:8]]
    prefix_prompts = _clear(prefixed, hf_greedy_margins(model, prefixed, MAX_NEW_TOKENS), 3)
    return {
        "greedy": greedy,
        "penalties": {
            p: d for p, d in zip(candidates, penalized, strict=True) if p in penalty_prompts
        },
        "beams": {p: d for p, d in zip(candidates, beams, strict=True) if p in beam_prompts},
        "prefix": prefix_prompts,
        "shared_prefix_tokens": len(hf_prompt_token_ids(model, [shared])[0]),
    }


def _greedy(max_tokens: int, **extra: Any) -> dict[str, Any]:
    return dict(temperature=0.0, max_tokens=max_tokens, ignore_eos=True, **extra)


@pytest.fixture(scope="module")
def engine(model: Path, cases: dict[str, Any], tmp_path_factory) -> dict[str, Any]:
    """Every check's generation in one stand-in engine: results per job, and the log."""
    seeded_prompts = list(DEFAULT_PROMPTS[:4]) * 2
    penalty_prompts = list(cases["penalties"])
    structured_prompts = list(DEFAULT_PROMPTS[:2])
    jobs: list[dict[str, Any]] = [
        {
            "name": "logprobs",
            "kind": "generate",
            "prompts": cases["greedy"],
            "sampling": _greedy(MAX_NEW_TOKENS, logprobs=TOP_LOGPROBS, prompt_logprobs=1),
        },
        {
            "name": "penalized",
            "kind": "generate",
            "prompts": penalty_prompts,
            "sampling": _greedy(
                2 * MAX_NEW_TOKENS,
                repetition_penalty=PENALTIES.repetition_penalty,
                presence_penalty=PENALTIES.presence_penalty,
                frequency_penalty=PENALTIES.frequency_penalty,
            ),
        },
        {
            "name": "unpenalized",
            "kind": "generate",
            "prompts": penalty_prompts,
            "sampling": _greedy(2 * MAX_NEW_TOKENS),
        },
        *(
            {
                "name": name,
                "kind": "generate",
                "prompts": seeded_prompts,
                "sampling": dict(
                    temperature=1.0, max_tokens=SEEDED_TOKENS, ignore_eos=True, seed=seed
                ),
            }
            for name, seed in (("seed_7", 7), ("seed_7_again", 7), ("seed_8", 8))
        ),
        {
            "name": "beams",
            "kind": "beam_search",
            "prompts": list(cases["beams"]),
            "beam_width": BEAM_WIDTH,
            "max_tokens": BEAM_STEPS,
        },
        {
            "name": "free_text",
            "kind": "generate",
            "prompts": structured_prompts,
            "sampling": _greedy(24) | {"ignore_eos": False},
        },
        *(
            {
                "name": f"structured_{kind}",
                "kind": "generate",
                "prompts": structured_prompts,
                "sampling": _greedy(24) | {"ignore_eos": False},
                "structured_outputs": constraint,
            }
            for kind, constraint in STRUCTURED.items()
        ),
        {"name": "metrics_before_prefix", "kind": "metrics", "names": PREFIX_METRICS},
        {
            "name": "prefix_first",
            "kind": "generate",
            "prompts": cases["prefix"][:1],
            "sampling": _greedy(MAX_NEW_TOKENS),
        },
        {
            "name": "prefix_rest",
            "kind": "generate",
            "prompts": cases["prefix"][1:],
            "sampling": _greedy(MAX_NEW_TOKENS),
        },
        {"name": "metrics_after_prefix", "kind": "metrics", "names": PREFIX_METRICS},
    ]
    engine_args = dict(
        dtype="float16",
        enable_prefix_caching=True,
        disable_log_stats=False,
        max_model_len=512,
    )
    call_log = tmp_path_factory.mktemp("ascend-features") / "calls.txt"
    results, output = run_engine_jobs(model, engine_args, jobs, call_log)
    assert f"KV cache block size {BLOCK_SIZE}" in output
    assert {
        "_npu_reshape_and_cache",
        "_npu_paged_attention",
        "npu_fused_infer_attention_score",
    } <= set(call_log.read_text().split()), "an Ascend attention op never ran"
    return results


STRUCTURED_CHOICES = ["sunny", "cloudy", "raining"]
STRUCTURED_PATTERN = r"[a-z]{2,5}( [a-z]{2,5}){2}\."
STRUCTURED = {"choice": {"choice": STRUCTURED_CHOICES}, "regex": {"regex": STRUCTURED_PATTERN}}


@pytest.mark.support("logprobs", "ascend")
def test_logprobs_match_transformers_on_ascend_path(engine: dict[str, Any], hf_model: Any) -> None:
    for output in engine["logprobs"]:
        prompt, generated = output["prompt_token_ids"], output["token_ids"]
        reference = next_token_log_probs(hf_model, prompt + generated)[len(prompt) - 1 : -1]
        assert len(output["logprobs"]) == len(generated) == MAX_NEW_TOKENS
        for step, (token, logprobs) in enumerate(zip(generated, output["logprobs"], strict=True)):
            expected = reference[step]
            assert token == int(expected.argmax()), "greedy token is not transformers' argmax"
            returned = dict(logprobs)
            assert len(returned) >= TOP_LOGPROBS and token in returned, (step, returned)
            for token_id, logprob in returned.items():
                assert math.isclose(
                    logprob, float(expected[token_id]), abs_tol=LOGPROB_TOLERANCE
                ), (step, token_id, logprob, float(expected[token_id]))


@pytest.mark.support("prompt_logprobs", "ascend")
def test_prompt_logprobs_match_transformers_on_ascend_path(
    engine: dict[str, Any], hf_model: Any
) -> None:
    for output in engine["logprobs"]:
        prompt = output["prompt_token_ids"]
        reference = next_token_log_probs(hf_model, prompt)
        positions = output["prompt_logprobs"]
        assert positions[0] is None and len(positions) == len(prompt)
        for position in range(1, len(prompt)):
            returned = dict(positions[position])
            expected = float(reference[position - 1, prompt[position]])
            assert math.isclose(returned[prompt[position]], expected, abs_tol=LOGPROB_TOLERANCE), (
                position,
                returned[prompt[position]],
                expected,
            )


@pytest.mark.support("penalties", "ascend")
def test_penalties_match_a_transformers_reference_on_ascend_path(
    engine: dict[str, Any], cases: dict[str, Any]
) -> None:
    generated = [output["token_ids"] for output in engine["penalized"]]
    expected = [list(decoded.token_ids[0]) for decoded in cases["penalties"].values()]
    assert generated == expected
    assert generated != [output["token_ids"] for output in engine["unpenalized"]], (
        "the penalties changed nothing: this check cannot tell them from no penalties"
    )


@pytest.mark.support("seeded_sampling", "ascend")
def test_seeded_sampling_reproduces_on_ascend_path(engine: dict[str, Any]) -> None:
    first, again, other = (
        [output["token_ids"] for output in engine[name]]
        for name in ("seed_7", "seed_7_again", "seed_8")
    )
    half = len(first) // 2
    assert first == again
    # Each prompt twice in one batch: the same seed gives the same tokens beside
    # other requests too.
    assert first[:half] == first[half:]
    assert first != other, "a different seed sampled the same tokens"


@pytest.mark.support("beam_search", "ascend")
def test_beam_search_matches_transformers_on_ascend_path(
    engine: dict[str, Any], cases: dict[str, Any], hf_model: Any
) -> None:
    for beams, decoded in zip(engine["beams"], cases["beams"].values(), strict=True):
        expected = [list(tokens) for tokens in decoded.token_ids]
        prompt_length = len(beams[0]) - BEAM_STEPS
        prompt = beams[0][:prompt_length]
        # The margin-reporting reference is transformers' beam search itself.
        assert transformers_beam_search(hf_model, prompt, BEAM_WIDTH, BEAM_STEPS) == expected
        assert [beam[prompt_length:] for beam in beams] == expected


@pytest.mark.support("structured_output", "ascend")
def test_structured_output_holds_to_its_constraint_on_ascend_path(engine: dict[str, Any]) -> None:
    free = [output["text"] for output in engine["free_text"]]
    choices = [output["text"] for output in engine["structured_choice"]]
    regex = [output["text"] for output in engine["structured_regex"]]
    assert all(text in STRUCTURED_CHOICES for text in choices), choices
    assert not any(text in STRUCTURED_CHOICES for text in free), free
    assert all(re.fullmatch(STRUCTURED_PATTERN, text) for text in regex), regex
    assert not any(re.fullmatch(STRUCTURED_PATTERN, text) for text in free), free


@pytest.mark.support("prefix_caching", "ascend")
def test_prefix_caching_with_a_prefix_longer_than_a_block_on_ascend_path(
    engine: dict[str, Any], cases: dict[str, Any], hf_model: Any
) -> None:
    assert cases["shared_prefix_tokens"] > BLOCK_SIZE
    before, after = engine["metrics_before_prefix"], engine["metrics_after_prefix"]
    hits = after["vllm:prefix_cache_hits"] - before["vllm:prefix_cache_hits"]
    rest = engine["prefix_rest"]
    # Each later prompt finds at least the first full block of the shared prefix.
    assert hits >= BLOCK_SIZE * len(rest), f"{hits} prefix-cache hit tokens"
    for output in engine["prefix_first"] + rest:
        prompt = output["prompt_token_ids"]
        reference = next_token_log_probs(hf_model, prompt + output["token_ids"])
        expected = reference[len(prompt) - 1 : -1].argmax(dim=-1).tolist()
        assert output["token_ids"] == expected


NGRAM = {
    "method": "ngram",
    "num_speculative_tokens": 3,
    "prompt_lookup_min": 1,
    "prompt_lookup_max": 3,
}
NGRAM_TOKENS = 32
SPEC_METRICS = ["vllm:spec_decode_num_draft_tokens", "vllm:spec_decode_num_accepted_tokens"]


def _verification_calls(specs: Path) -> list[tuple[list[int], int]]:
    """The recorded ``npu_fused_infer_attention_score`` calls in which requests with
    context in the cache had several query tokens (a speculative verification step):
    each call's query lengths and block size."""
    calls = []
    for line in specs.read_text().splitlines():
        call = json.loads(line)
        if call["op"] != "npu_fused_infer_attention_score":
            continue
        arguments = call["kwargs"]
        query_ends = [item["int"] for item in arguments["actual_seq_lengths"]["list"]]
        kv_lens = [item["int"] for item in arguments["actual_seq_lengths_kv"]["list"]]
        query_lens = [end - start for start, end in zip([0, *query_ends], query_ends, strict=False)]
        if max(query_lens) > 1 and all(q < kv for q, kv in zip(query_lens, kv_lens, strict=True)):
            calls.append((query_lens, arguments["block_size"]["int"]))
    return calls


@pytest.mark.support("spec_ngram", "ascend")
def test_ngram_speculation_keeps_greedy_output_on_ascend_path(tiny_model_dir, tmp_path) -> None:
    """Verifying drafts gives each request up to 1 + 3 query tokens over its cached
    context: the ascend kernels run those steps on npu_fused_infer_attention_score,
    which takes several query tokens per request only with a block size that is a
    multiple of 128 (the stand-in refuses anything else, as the real op does)."""
    model = build_repeating_model(
        tiny_model_dir(TinyModelSpec(arch="llama")), tmp_path / "repeating-llama"
    )
    candidates = list(DEFAULT_PROMPTS[:8])
    prompts = _clear(candidates, hf_greedy_margins(model, candidates, NGRAM_TOKENS), 4)
    hf_model = load_reference_model(model)
    jobs = [
        {
            "name": "greedy",
            "kind": "generate",
            "prompts": prompts,
            "sampling": _greedy(NGRAM_TOKENS),
        },
        {"name": "metrics", "kind": "metrics", "names": SPEC_METRICS},
    ]
    engine_args = dict(dtype="float16", speculative_config=NGRAM, disable_log_stats=False)
    call_log = tmp_path / "calls.txt"
    results, _ = run_engine_jobs(model, engine_args, jobs, call_log)

    for output in results["greedy"]:
        prompt, generated = output["prompt_token_ids"], output["token_ids"]
        reference = next_token_log_probs(hf_model, prompt + generated)
        assert generated == reference[len(prompt) - 1 : -1].argmax(dim=-1).tolist()
    drafted, accepted = (results["metrics"][name] for name in SPEC_METRICS)
    assert 0 < accepted < drafted, f"{accepted} of {drafted} draft tokens accepted"
    verification = _verification_calls(call_specs(call_log))
    assert verification, "no verification step ran on npu_fused_infer_attention_score"
    for query_lens, block_size in verification:
        assert max(query_lens) <= 1 + NGRAM["num_speculative_tokens"], query_lens
        assert block_size % BLOCK_SIZE == 0, block_size


EMBEDDING_TOLERANCE = 5e-3
"""float16 against transformers' float32 embedding (L2-normalised, entries up to about
0.35): transformers' own float16 run is up to 1e-3 away on these prompts."""


@pytest.mark.support("pooling", "ascend")
def test_embeddings_match_transformers_on_ascend_path(model: Path, tmp_path: Path) -> None:
    """``runner="pooling"`` on the decoder: vLLM's default embedding of a causal LM is
    the last token's final hidden state, L2-normalised."""
    from transformers import AutoModel

    prompts = list(DEFAULT_PROMPTS[:4])
    jobs = [{"name": "embed", "kind": "embed", "prompts": prompts}]
    engine_args = dict(dtype="float16", runner="pooling")
    call_log = tmp_path / "calls.txt"
    results, output = run_engine_jobs(model, engine_args, jobs, call_log)

    assert f"KV cache block size {BLOCK_SIZE}" in output
    assert "npu_fused_infer_attention_score" in call_log.read_text().split()
    base = AutoModel.from_pretrained(model, dtype=torch.float32, attn_implementation="eager")
    for embedding, prompt in zip(
        results["embed"], hf_prompt_token_ids(model, prompts), strict=True
    ):
        with torch.inference_mode():
            hidden = base(torch.tensor([prompt])).last_hidden_state[0, -1]
        expected = torch.nn.functional.normalize(hidden, dim=-1)
        returned = torch.tensor(embedding)
        assert returned.shape == expected.shape
        assert torch.allclose(returned, expected, atol=EMBEDDING_TOLERANCE), float(
            (returned - expected).abs().max()
        )
