"""The ``support`` mark's vocabulary, and a pytest plugin that holds marks to it.

``@pytest.mark.support(feature, *backends, refused=False)`` says that a test proves
``feature`` works end to end (or, with ``refused=True``, is refused at start-up in
one line) on those backends. docs/support_matrix.md is generated from the marks
(scripts/support_matrix.py). The plugin (loaded by the root conftest) fails the
collection on a mark outside this vocabulary, and with ``--support-marks-json PATH``
writes every collected mark to ``PATH``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

FEATURES: dict[str, str] = {
    "prefix_caching": "Prefix caching",
    "chunked_prefill": "Chunked prefill",
    "logprobs": "Logprobs",
    "prompt_logprobs": "Prompt logprobs",
    "penalties": "Presence / frequency / repetition penalties",
    "seeded_sampling": "Seeded sampling",
    "beam_search": "Beam search",
    "structured_output": "Structured output",
    "lora": "LoRA",
    "spec_ngram": "Speculative decoding: ngram",
    "spec_draft_model": "Speculative decoding: draft model",
    "spec_eagle": "Speculative decoding: EAGLE",
    "spec_mtp": "Speculative decoding: MTP",
    "pooling": "Embeddings / pooling",
    "tp": "Tensor parallelism (TP)",
    "pp": "Pipeline parallelism (PP)",
    "ep": "Expert parallelism (EP)",
    "dp": "Data parallelism (DP)",
    "ray": "Ray executor",
    "moe": "Mixture of experts (MoE)",
    "mla": "Multi-head latent attention (MLA)",
    "sliding_window": "Sliding-window attention",
    "soft_cap": "Attention logit soft-cap",
    "sleep_mode": "Sleep mode",
    "quantization": "Quantization",
    "multimodal": "Multimodal inputs",
    "kv_connector": "KV connectors / disaggregated prefill",
    "fp8_kv_cache": "fp8 KV cache",
    "encoder_decoder": "Encoder-decoder models",
    "encoder_only": "Encoder-only models",
}
"""Feature key -> its name in the support matrix, in the matrix's row order."""

BACKENDS: dict[str, str] = {
    "host": "host",
    "ascend": "Ascend (torch_npu stand-in)",
}
"""Backend key -> its column in the support matrix."""

MARK = "support"


@dataclass(frozen=True)
class SupportMark:
    """One ``support`` mark on one collected test."""

    nodeid: str
    feature: str
    backends: tuple[str, ...]
    refused: bool


def mark_problems(nodeid: str, mark: pytest.Mark) -> list[str]:
    """What is wrong with this ``support`` mark (nothing: an empty list)."""
    if not mark.args:
        return [f"{nodeid}: support mark without a feature"]
    feature, *backends = mark.args
    problems = []
    if feature not in FEATURES:
        problems.append(
            f"{nodeid}: unknown support feature {feature!r} (known: {', '.join(FEATURES)}; "
            "add new ones to vllm_npu.testing.support_marks.FEATURES)"
        )
    if not backends:
        problems.append(f"{nodeid}: support mark for {feature!r} names no backend")
    problems += [
        f"{nodeid}: unknown support backend {backend!r} (known: {', '.join(BACKENDS)})"
        for backend in backends
        if backend not in BACKENDS
    ]
    if set(mark.kwargs) - {"refused"} or not isinstance(mark.kwargs.get("refused", False), bool):
        problems.append(f"{nodeid}: support mark takes only refused=True/False as a keyword")
    return problems


def collected_marks(items: list[pytest.Item]) -> list[SupportMark]:
    """Every ``support`` mark on these items, checked; raises ``pytest.UsageError``
    listing every bad mark."""
    marks, problems = [], []
    for item in items:
        for mark in item.iter_markers(MARK):
            found = mark_problems(item.nodeid, mark)
            problems += found
            if not found:
                marks.append(
                    SupportMark(
                        nodeid=item.nodeid,
                        feature=mark.args[0],
                        backends=tuple(mark.args[1:]),
                        refused=mark.kwargs.get("refused", False),
                    )
                )
    if problems:
        raise pytest.UsageError("\n".join(problems))
    return marks


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--support-marks-json",
        metavar="PATH",
        help="write the collected tests' support marks to PATH (scripts/support_matrix.py)",
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marks = collected_marks(items)
    path = config.getoption("--support-marks-json")
    if path:
        Path(path).write_text(json.dumps([asdict(mark) for mark in marks], indent=1))
