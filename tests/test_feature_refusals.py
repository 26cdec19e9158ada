"""vLLM features the plugin cannot run yet are refused while vLLM builds the engine
configuration, in one line that names the feature and says what to do: on the host
backend (in this process) and on the Ascend path (the stand-in, in a process of its
own, as vLLM resolves its platform once per process)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from vllm_npu.platform import refusals
from vllm_npu.testing import TinyModelSpec
from vllm_npu.testing.start_up import start_up_error, start_up_errors_in_backend

KV_CONNECTOR = {"kv_connector": "ExampleConnector", "kv_role": "kv_both"}


def _with_tokenizer(folder: Path, config: Any, llama: Path) -> Path:
    """A model folder of ``config`` with the tiny llama's tokenizer (the configuration
    is all vLLM reads at start-up)."""
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    for item in llama.iterdir():
        if item.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(item, folder / item.name)
    return folder


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from transformers import (
        BertConfig,
        Gemma2Config,
        MistralConfig,
        PaliGemmaConfig,
        WhisperConfig,
    )

    llama = tiny_model_dir(TinyModelSpec(arch="llama"))
    root = tmp_path_factory.mktemp("refused-models")
    quantized = root / "fp8-checkpoint"
    shutil.copytree(llama, quantized)
    config = json.loads((quantized / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "fp8", "activation_scheme": "dynamic"}
    (quantized / "config.json").write_text(json.dumps(config))
    small = dict(vocab_size=512, intermediate_size=128)
    bert = BertConfig(
        **small, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        architectures=["BertModel"],
    )
    whisper = WhisperConfig(
        vocab_size=512, d_model=64, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
        decoder_ffn_dim=128, architectures=["WhisperForConditionalGeneration"],
    )
    attention = dict(
        small, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    )
    mistral = MistralConfig(**attention, sliding_window=8, architectures=["MistralForCausalLM"])
    gemma2 = Gemma2Config(
        **attention, head_dim=16, sliding_window=None, layer_types=["full_attention"] * 2,
        attn_logit_softcapping=50.0, architectures=["Gemma2ForCausalLM"],
    )
    # A Gemma language model with a SigLIP image tower: vLLM's PaliGemma class imports
    # without torchvision, so vLLM inspects it and the platform sees a multimodal model.
    paligemma = PaliGemmaConfig(
        text_config=dict(attention, head_dim=16),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            image_size=28, patch_size=14,
        ),
        image_token_index=small["vocab_size"] - 1,
        architectures=["PaliGemmaForConditionalGeneration"],
    )
    return {
        "mistral-sliding-window": _with_tokenizer(root / "mistral", mistral, llama),
        "gemma2-soft-cap": _with_tokenizer(root / "gemma2", gemma2, llama),
        "llama": llama,
        "fp8-checkpoint": quantized,
        "bert": _with_tokenizer(root / "bert", bert, llama),
        "whisper": _with_tokenizer(root / "whisper", whisper, llama),
        "paligemma": _with_tokenizer(root / "paligemma", paligemma, llama),
    }


CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "sleep-mode": ("sleep_mode", "llama", {"enable_sleep_mode": True}),
    "quantized-checkpoint": ("quantization", "fp8-checkpoint", {}),
    "quantization-option": ("quantization", "llama", {"quantization": "fp8"}),
    "encoder-decoder": ("encoder_decoder", "whisper", {}),
    "encoder-only": ("encoder_only", "bert", {"runner": "pooling"}),
    "kv-connector": ("kv_connector", "llama", {"kv_transfer_config": KV_CONNECTOR}),
    "fp8-kv-cache": ("fp8_kv_cache", "llama", {"kv_cache_dtype": "fp8"}),
    "fp8-e5m2-kv-cache": ("fp8_kv_cache", "llama", {"kv_cache_dtype": "fp8_e5m2"}),
    "multimodal": ("multimodal", "paligemma", {}),
    "multimodal-text-only": ("multimodal", "paligemma", {"language_model_only": True}),
}
"""Case id -> (feature key, model, engine arguments)."""

ASCEND_ONLY_CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "sliding-window": ("sliding_window", "mistral-sliding-window", {"window": 8}),
    "soft-cap": ("soft_cap", "gemma2-soft-cap", {"cap": 50.0}),
}
"""Attention features the reference kernels run and the Ascend ones refuse: case id ->
(feature key, model, the values its refusal names)."""


@pytest.fixture(scope="module")
def ascend_errors(models: dict[str, Path]) -> dict[str, str | None]:
    """Every case's start-up error on the Ascend path, from one stand-in process."""
    cases = [(models[model], {"dtype": "float16", **args}) for _, model, args in CASES.values()]
    # bfloat16: vLLM refuses Gemma-2 in float16.
    cases += [(models[model], {"dtype": "bfloat16"}) for _, model, _ in ASCEND_ONLY_CASES.values()]
    errors = start_up_errors_in_backend("ascend-standin", cases)
    return dict(zip([*CASES, *ASCEND_ONLY_CASES], errors, strict=True))


def _case(case: str) -> Any:
    feature = CASES[case][0]
    return pytest.param(
        case, id=case, marks=pytest.mark.support(feature, "host", "ascend", refused=True)
    )


@pytest.mark.parametrize("case", [_case(case) for case in CASES])
def test_refused_at_start_up_in_one_line(
    case: str, models: dict[str, Path], ascend_errors: dict[str, str | None]
) -> None:
    feature, model, args = CASES[case]
    expected = refusals.START_UP_REFUSALS[feature]
    assert "\n" not in expected and expected.startswith("vllm-npu: ")
    assert start_up_error(models[model], dtype="float32", **args) == expected
    assert ascend_errors[case] == expected


def test_the_same_models_start_without_the_refused_features(models: dict[str, Path]) -> None:
    """The refusals come from the features, not from the models."""
    assert start_up_error(models["llama"], dtype="float32") is None
    assert start_up_error(models["llama"], dtype="float32", runner="pooling") is None


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, id=case, marks=pytest.mark.support(feature, "ascend", refused=True))
        for case, (feature, _, _) in ASCEND_ONLY_CASES.items()
    ],
)
def test_attention_features_the_ascend_kernels_lack_are_refused_at_start_up(
    case: str, models: dict[str, Path], ascend_errors: dict[str, str | None]
) -> None:
    """Refused before any layer is built on the Ascend path; accepted on host, whose
    reference kernels run them (tests/e2e/test_greedy_parity.py, test_soft_cap.py)."""
    feature, model, values = ASCEND_ONLY_CASES[case]
    assert ascend_errors[case] == refusals.START_UP_REFUSALS[feature].format(**values)
    assert start_up_error(models[model], dtype="float32") is None
