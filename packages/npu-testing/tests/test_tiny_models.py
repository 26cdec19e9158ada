"""Tests for the tiny offline checkpoints and the Hugging Face greedy reference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from vllm_npu.testing import (
    ARCHITECTURES,
    DEFAULT_PROMPTS,
    MLA_ARCHITECTURES,
    TinyModelSpec,
    build_tiny_model,
    build_tiny_models,
    hf_greedy_generate,
    hf_greedy_routing_margins,
    hf_prompt_token_ids,
)

MARKER = "tiny_model_spec.json"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tiny_models(tmp_path_factory.mktemp("tiny"))


def _file_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_spec_gives_identical_files(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    again = build_tiny_model(tmp_path / "llama", TinyModelSpec(arch="llama"))
    first, second = _file_bytes(tiny_models["llama"]), _file_bytes(again)
    assert first.keys() == second.keys()
    assert first["model.safetensors"] == second["model.safetensors"]
    assert first["tokenizer.json"] == second["tokenizer.json"]
    assert first == second


def test_second_build_is_cached(tiny_models: dict[str, Path]) -> None:
    path = tiny_models["qwen2"]
    before = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
    assert build_tiny_model(path, TinyModelSpec(arch="qwen2")) == path
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == before


def test_changed_spec_rebuilds(tmp_path: Path) -> None:
    build_tiny_model(tmp_path, TinyModelSpec(seed=0))
    seed0 = (tmp_path / "model.safetensors").read_bytes()
    build_tiny_model(tmp_path, TinyModelSpec(seed=1))
    assert (tmp_path / "model.safetensors").read_bytes() != seed0
    assert json.loads((tmp_path / MARKER).read_text())["spec"]["seed"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_loads_offline(tiny_models: dict[str, Path], arch: str) -> None:
    path = tiny_models[arch]
    spec = TinyModelSpec(arch=arch)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    config = model.config

    assert config.model_type == arch
    assert config.architectures == [type(model).__name__]
    assert config.vocab_size == spec.vocab_size == len(tokenizer)
    # MLA configs name the rope part of a head head_dim.
    assert config.head_dim == (config.qk_rope_head_dim if arch in MLA_ARCHITECTURES else 16)
    assert config.tie_word_embeddings is False
    assert model.get_input_embeddings().weight.shape == (spec.vocab_size, 64)
    assert config.bos_token_id == tokenizer.convert_tokens_to_ids("<s>")
    assert config.eos_token_id == tokenizer.convert_tokens_to_ids("</s>")
    assert config.pad_token_id == tokenizer.convert_tokens_to_ids("<pad>")
    assert tokenizer.unk_token == "<unk>"
    assert model.generation_config.eos_token_id == config.eos_token_id

    text = "Hello world, the lighthouse keeper says hi!"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_loaded_tokenizer_matches_saved_file(
    tiny_models: dict[str, Path], arch: str
) -> None:
    # transformers may rebuild parts of a tokenizer by model type (it does for
    # qwen2); the loaded one must still encode exactly like tokenizer.json.
    path = tiny_models[arch]
    saved = Tokenizer.from_file(str(path / "tokenizer.json"))
    loaded = AutoTokenizer.from_pretrained(path)
    texts = [*DEFAULT_PROMPTS, "In 2024 I'M (really) sure: cafe\u0301 \u2603\n\tend"]
    for text in texts:
        assert loaded(text)["input_ids"] == saved.encode(text).ids


def test_chat_template_renders(tiny_models: dict[str, Path]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["llama"])
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi!"},
    ]
    rendered = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    assert rendered == "<|system|>Be brief.\n<|user|>Hi!\n<|assistant|>"


def test_default_prompts_vary_in_length() -> None:
    words = [len(p.split()) for p in DEFAULT_PROMPTS]
    assert len(DEFAULT_PROMPTS) >= 10
    assert len(set(DEFAULT_PROMPTS)) == len(DEFAULT_PROMPTS)
    assert min(words) <= 3
    assert max(words) >= 50


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_greedy_outputs_are_varied(tiny_models: dict[str, Path], arch: str) -> None:
    outputs = hf_greedy_generate(tiny_models[arch], DEFAULT_PROMPTS, max_new_tokens=8)
    assert [len(o) for o in outputs] == [8] * len(DEFAULT_PROMPTS)
    assert len({tuple(o) for o in outputs}) == len(outputs)
    assert all(len(set(o)) > 1 for o in outputs)


def test_greedy_matches_full_recompute_argmax(tiny_models: dict[str, Path]) -> None:
    path = tiny_models["llama"]
    prompts = DEFAULT_PROMPTS[:2]
    outputs = hf_greedy_generate(path, prompts, max_new_tokens=5)
    prompt_ids = hf_prompt_token_ids(path, prompts)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    with torch.inference_mode():
        for ids, output in zip(prompt_ids, outputs, strict=True):
            seq = list(ids)
            for _ in range(5):
                seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
            assert seq[len(ids) :] == output


def test_greedy_does_not_stop_at_eos(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    prompts = DEFAULT_PROMPTS[:1]
    expected = hf_greedy_generate(tiny_models["llama"], prompts, max_new_tokens=6)
    # Declare the second generated token to be EOS; decoding must run on.
    path = Path(shutil.copytree(tiny_models["llama"], tmp_path / "eos"))
    for name in ("config.json", "generation_config.json"):
        content = json.loads((path / name).read_text())
        content["eos_token_id"] = expected[0][1]
        (path / name).write_text(json.dumps(content))
    assert hf_greedy_generate(path, prompts, max_new_tokens=6) == expected


def test_qwen2_sliding_window_reaches_config(tmp_path: Path) -> None:
    spec = TinyModelSpec(arch="qwen2", sliding_window=8, num_layers=1)
    config = AutoConfig.from_pretrained(build_tiny_model(tmp_path, spec))
    assert config.use_sliding_window is True
    assert config.sliding_window == 8
    assert config.max_window_layers == 0
    assert config.layer_types == ["sliding_attention"]


def test_qwen2_defaults_to_full_attention(tiny_models: dict[str, Path]) -> None:
    config = AutoConfig.from_pretrained(tiny_models["qwen2"])
    assert config.use_sliding_window is False
    assert config.sliding_window is None


def test_mla_models_are_dense_deepseek_shapes(tiny_models: dict[str, Path]) -> None:
    from safetensors import safe_open

    v2, v3 = (AutoConfig.from_pretrained(tiny_models[a]) for a in ("deepseek_v2", "deepseek_v3"))
    for config in (v2, v3):
        assert config.first_k_dense_replace >= config.num_hidden_layers, "MoE layers"
        assert config.qk_nope_head_dim + config.qk_rope_head_dim != config.v_head_dim
    assert v2.q_lora_rank is None and v3.q_lora_rank is not None
    assert v3.rope_parameters["rope_type"] == "yarn" and v3.num_nextn_predict_layers == 1
    with safe_open(tiny_models["deepseek_v3"] / "model.safetensors", "pt") as weights:
        names = list(weights.keys())
    mtp = f"model.layers.{v3.num_hidden_layers}."
    assert f"{mtp}eh_proj.weight" in names and f"{mtp}self_attn.kv_b_proj.weight" in names


def test_mla_variants_reach_the_config(tmp_path: Path) -> None:
    """Real MLA sizes (what Ascend's MLA ops take) and MoE layers after a dense one."""
    spec = TinyModelSpec(
        arch="deepseek_v2", mla_dims="real", mla_moe=True, num_heads=8, hidden_size=128,
        num_experts=4,
    )  # fmt: skip
    config = AutoConfig.from_pretrained(build_tiny_model(tmp_path / "v2", spec))
    sizes = (config.kv_lora_rank, config.qk_rope_head_dim, config.qk_nope_head_dim)
    assert sizes + (config.v_head_dim,) == (512, 64, 128, 128)
    assert config.first_k_dense_replace == 1 and config.n_shared_experts == 1
    assert (config.topk_method, config.n_group, config.topk_group) == ("group_limited_greedy", 2, 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"arch": "gpt2"},
        {"vocab_size": 100},
        {"num_heads": 3},
        {"num_kv_heads": 3},
        {"dtype": "float"},
        {"dtype": "int8"},
        {"arch": "llama", "sliding_window": 8},
        {"arch": "llama", "mla_dims": "real"},
        {"arch": "deepseek_v2", "mla_dims": "huge"},
        {"arch": "qwen2", "mla_moe": True},
    ],
)
def test_invalid_spec_is_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TinyModelSpec(**kwargs)


def test_routing_margins_are_the_routers_closest_choice(tiny_models: dict[str, Path]) -> None:
    """Teacher-forced on the greedy continuation, the smallest gap between the last
    chosen and the best unchosen router logit equals what the margins report; a
    dense model has no routing decision."""
    prompts = list(DEFAULT_PROMPTS[:2])
    assert hf_greedy_routing_margins(tiny_models["llama"], prompts, 4) == [float("inf")] * 2
    model_path = tiny_models["mixtral"]
    margins = hf_greedy_routing_margins(model_path, prompts, 4)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    top_k = model.config.num_experts_per_tok
    logits: list[torch.Tensor] = []
    routers = [m for n, m in model.named_modules() if n.endswith("mlp.gate")]
    for router in routers:
        router.register_forward_hook(lambda _m, _a, out: logits.append(out[0]))
    for ids, continuation, margin in zip(
        hf_prompt_token_ids(model_path, prompts),
        hf_greedy_generate(model_path, prompts, 4),
        margins,
        strict=True,
    ):
        logits.clear()
        with torch.inference_mode():
            model(torch.tensor([ids + continuation[:-1]]))
        assert len(logits) == len(routers) == model.config.num_hidden_layers
        ranked = torch.cat(logits).sort(dim=-1, descending=True).values
        expected = float((ranked[:, top_k - 1] - ranked[:, top_k]).min())
        assert 0 < margin == pytest.approx(expected, abs=1e-5)
