"""LoRA and speculative methods the plugin cannot run are refused while vLLM builds
the engine configuration, in one line naming the feature and what to do: LoRA on the
Ascend path (the stand-in, in a process of its own), EAGLE, MTP and draft-model
speculation on both backends. LoRA and ngram speculation start on host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vllm_npu.platform import _lora, _speculative
from vllm_npu.testing import TinyModelSpec
from vllm_npu.testing.start_up import start_up_error, start_up_errors_in_backend


@pytest.fixture(scope="module")
def models(tiny_model_dir) -> dict[str, Path]:
    return {
        "llama": tiny_model_dir(TinyModelSpec(arch="llama")),
        "deepseek_v3": tiny_model_dir(TinyModelSpec(arch="deepseek_v3")),
    }


def _speculation(method: str, draft: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {"method": method, "num_speculative_tokens": 2}
    if draft is not None:
        config["model"] = draft
    return {"speculative_config": config}


def _cases(models: dict[str, Path]) -> dict[str, tuple[Path, dict[str, Any]]]:
    llama = str(models["llama"])
    return {
        "lora": (models["llama"], {"enable_lora": True, "max_lora_rank": 8}),
        "draft_model": (models["llama"], _speculation("draft_model", llama)),
        "eagle": (models["llama"], _speculation("eagle", llama)),
        "eagle3": (models["llama"], _speculation("eagle3", llama)),
        "mtp": (models["deepseek_v3"], _speculation("mtp", None)),
    }


EXPECTED = {
    "draft_model": _speculative.SPEC_DRAFT_MODEL_REFUSAL.format(method="draft_model"),
    "eagle": _speculative.SPEC_EAGLE_REFUSAL.format(method="eagle"),
    "eagle3": _speculative.SPEC_EAGLE_REFUSAL.format(method="eagle3"),
    "mtp": _speculative.SPEC_MTP_REFUSAL.format(method="mtp"),
}
"""Case -> its refusal on both backends (LoRA is refused on Ascend only)."""

FEATURES = {
    "draft_model": "spec_draft_model",
    "eagle": "spec_eagle",
    "eagle3": "spec_eagle",
    "mtp": "spec_mtp",
}


@pytest.fixture(scope="module")
def ascend_errors(models: dict[str, Path]) -> dict[str, str | None]:
    """Every case's start-up error on the Ascend path, from one stand-in process."""
    cases = _cases(models)
    payload = [(model, {"dtype": "float16", **args}) for model, args in cases.values()]
    errors = start_up_errors_in_backend("ascend-standin", payload)
    return dict(zip(cases, errors, strict=True))


@pytest.mark.support("lora", "ascend", refused=True)
def test_lora_is_refused_on_ascend(ascend_errors: dict[str, str | None]) -> None:
    assert ascend_errors["lora"] == _lora.LORA_REFUSAL
    assert _lora.LORA_REFUSAL.startswith("vllm-npu: ") and "\n" not in _lora.LORA_REFUSAL


def test_lora_and_ngram_start_on_host(models: dict[str, Path]) -> None:
    lora_model, lora_args = _cases(models)["lora"]
    assert start_up_error(lora_model, dtype="float32", **lora_args) is None
    ngram = {"method": "ngram", "num_speculative_tokens": 2, "prompt_lookup_max": 2}
    assert start_up_error(models["llama"], dtype="float32", speculative_config=ngram) is None


def test_lora_runs_eagerly_on_host(models: dict[str, Path]) -> None:
    """A traced graph would keep one step's adapter mapping (compiled runs measured
    ignoring the adapters): LoRA turns graph compilation off."""
    from vllm.config import CompilationMode
    from vllm.engine.arg_utils import EngineArgs

    lora_model, lora_args = _cases(models)["lora"]
    config = EngineArgs(model=str(lora_model), dtype="float32", **lora_args).create_engine_config()
    assert config.compilation_config.mode == CompilationMode.NONE
    plain = EngineArgs(model=str(lora_model), dtype="float32").create_engine_config()
    assert plain.compilation_config.mode != CompilationMode.NONE


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            case, id=case, marks=pytest.mark.support(feature, "host", "ascend", refused=True)
        )
        for case, feature in FEATURES.items()
    ],
)
def test_speculative_method_is_refused_at_start_up(
    case: str, models: dict[str, Path], ascend_errors: dict[str, str | None]
) -> None:
    model, args = _cases(models)[case]
    expected = EXPECTED[case]
    assert expected.startswith("vllm-npu: ") and "\n" not in expected
    assert start_up_error(model, dtype="float32", **args) == expected
    assert ascend_errors[case] == expected


@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("deepseek_mtp", _speculative.SPEC_MTP_REFUSAL),
        ("qwen3_next_mtp", _speculative.SPEC_MTP_REFUSAL),
        ("dflash", _speculative.SPEC_EAGLE_REFUSAL),
        ("medusa", _speculative.SPEC_METHOD_REFUSAL),
        ("suffix", _speculative.SPEC_METHOD_REFUSAL),
        ("ngram_gpu", _speculative.SPEC_METHOD_REFUSAL),
    ],
)
def test_every_other_method_is_refused_by_name(method: str, template: str) -> None:
    assert _speculative.speculative_refusal(method) == template.format(method=method)


def test_only_standard_rejection_sampling_runs() -> None:
    assert _speculative.speculative_refusal("ngram", "standard") is None
    assert _speculative.speculative_refusal("ngram", "block") == (
        _speculative.SPEC_REJECTION_SAMPLE_REFUSAL.format(method="block")
    )
