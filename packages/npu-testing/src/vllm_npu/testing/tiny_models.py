"""Tiny random-weight Hugging Face checkpoints, built offline and deterministically.

Tests use them to run real models end to end without a model hub or network.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    AutoModelForCausalLM,
    DeepseekV2Config,
    DeepseekV3Config,
    GenerationConfig,
    Glm4MoeConfig,
    LlamaConfig,
    MixtralConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3MoeConfig,
)

DENSE_ARCHITECTURES = ("llama", "qwen2")
MOE_ARCHITECTURES = ("mixtral", "qwen3_moe", "glm4_moe")
"""Mixture-of-experts models: Mixtral (softmax top-k, renormalised), Qwen3-MoE
(softmax top-k, not renormalised) and GLM-4-MoE, which has DeepSeek-V3's MoE
(sigmoid scores, correction bias, grouped top-k, routed scaling factor, a shared
expert, a dense first layer) with dense attention instead of MLA."""
MLA_ARCHITECTURES = ("deepseek_v2", "deepseek_v3")
"""Multi-head latent attention models, by default with dense MLPs in every layer
(``first_k_dense_replace`` = all layers; ``TinyModelSpec.mla_moe``: MoE layers after
the first): DeepSeek-V2 (no query compression) and DeepSeek-V3 (compressed query, yarn
rope scaling, one MTP layer in the checkpoint)."""
ARCHITECTURES = DENSE_ARCHITECTURES + MOE_ARCHITECTURES + MLA_ARCHITECTURES
_QWEN2_TOKENIZER_ARCHS = ("qwen2", "qwen3_moe")

SPEC_MARKER = "tiny_model_spec.json"
# Bump when the build recipe changes, so cached folders built by an older
# recipe are rebuilt instead of silently reused.
_RECIPE_VERSION = 2

_BOS, _EOS, _UNK, _PAD = "<s>", "</s>", "<unk>", "<pad>"
_SPECIAL_TOKENS = (_BOS, _EOS, _UNK, _PAD)
# A byte-level BPE needs all 256 bytes plus the special tokens.
_MIN_VOCAB_SIZE = 256 + len(_SPECIAL_TOKENS)

_DTYPES = ("float32", "float16", "bfloat16")

# transformers 5 loads every qwen2 checkpoint with Qwen2Tokenizer, which keeps
# the trained vocabulary and merges but rebuilds normalizer and pre-tokenizer
# with this split. Training qwen2 tokenizers with the same pipeline keeps
# tokenizer.json and the loaded tokenizer in agreement.
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_WEIGHT_STD = 0.5
_BIAS_STD = 0.1
# MoE models: every matrix at 1 / sqrt(fan_in) (embeddings at 1), as trained models
# keep their activations, and the lm_head at _MOE_LM_HEAD_GAIN / sqrt(fan_in) for
# spread-out logits. At _WEIGHT_STD the activations grow layer by layer until
# float16 rounding moves the router logits by 0.05 to 9, past the gaps between
# experts, and a flipped expert changes the output by as much as the residual
# stream; at this scale float16 moves them by about 4e-3.
_MOE_LM_HEAD_GAIN = 4.0
# glm4_moe routing: experts in 2 groups, the best group chosen per token, weights
# scaled by the spec's routed_scaling_factor (DeepSeek-V3 uses 8 groups, 4 chosen, 2.5).
_GLM4_MOE_GROUPS = 2
# MLA sizes by TinyModelSpec.mla_dims: latent, rope, nope, values; and the query latent
# of deepseek_v3 (q_lora_rank).
_MLA_DIMS = {
    "tiny": dict(kv_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16),
    "real": dict(kv_lora_rank=512, qk_rope_head_dim=64, qk_nope_head_dim=128, v_head_dim=128),
}
_MLA_Q_LORA_RANK = {"tiny": 24, "real": 96}
# mla_moe routing of deepseek_v2: group-limited greedy over 2 groups (1 chosen), weights
# scaled by 2 (DeepSeek-V2: 8 groups, 3 chosen, 16).
_MLA_MOE_GROUPS = 2
_MLA_MOE_ROUTED_SCALING = 2.0
_YARN = dict(
    rope_type="yarn",
    factor=4.0,
    original_max_position_embeddings=256,
    beta_fast=32.0,
    beta_slow=1.0,
    mscale=1.0,
    mscale_all_dim=1.0,
)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

# Files a finished build leaves behind; the spec marker is written last.
_MODEL_FILES = (
    "chat_template.jinja",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
)

_CORPUS = """\
The old lighthouse stood at the edge of the harbor, where the river met the
sea. Every evening the keeper climbed the narrow stairs, lit the great lamp and
watched the ships come home. Fishermen waved from their boats, children ran
along the stone wall, and the gulls circled above the market square.

In the spring the town held a festival. Farmers brought fresh bread, cheese,
apples and honey from the valley. Musicians played in the streets until late
at night, and travelers from distant cities came to see the painted boats
sail past the lighthouse in a long and colorful line.

A computer reads a program one instruction at a time. It adds numbers, moves
data between memory and registers, and compares values to decide what to do
next. Modern processors run many instructions in parallel, and large models
split their work across several devices that exchange results over a network.

Language models predict the next word from the words that came before. They
turn text into tokens, look up a vector for every token, and pass the vectors
through layers of attention and small feed forward networks. The last layer
gives a score for every token in the vocabulary, and the model picks the next
one from those scores.

Good tests are small, fast and honest. They check one behavior, they fail with
a clear message, and they never depend on the weather, the clock or a server
on the other side of the world. When a test breaks, it should tell you what
went wrong and where to look first.

She opened the window, poured a cup of tea and wrote a letter to her brother.
The garden was green after the rain, the cat slept on the warm chair, and the
radio played a quiet song about mountains, rivers and the long road home.
"""

DEFAULT_PROMPTS: tuple[str, ...] = (
    "Hello there",
    "The capital of France is",
    "Once upon a time, in a small village,",
    "Write a short poem about the sea.",
    "Explain how a computer adds two numbers.",
    "List three things you would bring to a picnic in the park on a sunny day.",
    "The keeper climbed the narrow stairs of the old lighthouse, lit the great "
    "lamp and watched the ships come home",
    "Language models turn text into tokens, look up a vector for every token "
    "and pass the vectors through layers of attention. Describe what happens "
    "in the last layer.",
    "In the spring the town held a festival where farmers brought fresh bread, "
    "cheese, apples and honey from the valley, and musicians played in the "
    "streets until late at night. What else might the travelers have seen?",
    "Good tests are small, fast and honest: they check one behavior, fail with "
    "a clear message and never depend on the weather, the clock or a server on "
    "the other side of the world. Imagine you are reviewing a pull request that "
    "adds a slow, flaky test which downloads a large file from the internet. "
    "Write a polite comment that explains the problem and suggests a better way.",
    "She opened the window and",
    "Why is the sky blue during the day but red at sunset? Answer in two sentences.",
)


@dataclass(frozen=True)
class TinyModelSpec:
    """Everything that determines a tiny checkpoint; equal specs give equal files."""

    arch: str = "llama"
    seed: int = 0
    vocab_size: int = 512
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    max_position_embeddings: int = 1024
    dtype: str = "float32"
    # Only used by qwen2: every layer then uses sliding-window attention.
    sliding_window: int | None = None
    # Only used by the MoE architectures; intermediate_size is then each expert's.
    num_experts: int = 8
    experts_per_token: int = 2
    # Only used by glm4_moe: the factor its routed experts' weights are scaled by.
    routed_scaling_factor: float = 2.5
    # Only used by the MLA architectures: "tiny" sizes (latent 32, rope 8, nope 16,
    # values 16) or the "real" ones of DeepSeek-V2/V3 (512, 64, 128, 128), the only
    # sizes Ascend's MLA ops take.
    mla_dims: str = "tiny"
    # Only used by the MLA architectures: MoE layers after the first dense one (one
    # shared expert; deepseek_v2 routes with group-limited greedy top-k).
    mla_moe: bool = False

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if self.vocab_size < _MIN_VOCAB_SIZE:
            raise ValueError(f"vocab_size must be at least {_MIN_VOCAB_SIZE}")
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be a multiple of num_heads")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {self.dtype!r}")
        if self.sliding_window is not None and self.arch != "qwen2":
            raise ValueError("sliding_window is only supported for arch='qwen2'")
        if not 1 <= self.experts_per_token <= self.num_experts:
            raise ValueError("experts_per_token must be between 1 and num_experts")
        if self.arch == "glm4_moe" and self.num_experts % _GLM4_MOE_GROUPS:
            raise ValueError(f"glm4_moe needs num_experts divisible by {_GLM4_MOE_GROUPS}")
        if self.routed_scaling_factor <= 0:
            raise ValueError("routed_scaling_factor must be positive")
        if self.mla_dims not in _MLA_DIMS:
            raise ValueError(f"mla_dims must be one of {tuple(_MLA_DIMS)}, got {self.mla_dims!r}")
        if (self.mla_dims != "tiny" or self.mla_moe) and self.arch not in MLA_ARCHITECTURES:
            raise ValueError("mla_dims and mla_moe are only used by the MLA architectures")
        if self.mla_moe and self.num_experts % _MLA_MOE_GROUPS:
            raise ValueError(f"mla_moe needs num_experts divisible by {_MLA_MOE_GROUPS}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def build_tiny_model(
    path: str | os.PathLike[str], spec: TinyModelSpec = TinyModelSpec()
) -> Path:
    """Write a tiny checkpoint for ``spec`` into ``path`` and return ``path``.

    The folder holds config.json, model.safetensors, generation_config.json and
    a byte-level BPE tokenizer with a chat template. If ``path`` already holds
    a complete build of the same spec, nothing is rewritten.
    """
    path = Path(path)
    marker = _marker_text(spec)
    if _is_complete(path, marker):
        return path
    path.mkdir(parents=True, exist_ok=True)
    (path / SPEC_MARKER).unlink(missing_ok=True)
    # Build next to the target and move the files in, so a crash or a parallel
    # builder never leaves a half-written file under a final name.
    staging = Path(tempfile.mkdtemp(prefix=".tiny-model-", dir=path))
    try:
        tokenizer = _build_tokenizer(spec)
        _build_model(spec, tokenizer).save_pretrained(staging, safe_serialization=True)
        if spec.arch == "deepseek_v3":
            _add_mtp_layer(staging / "model.safetensors", spec)
        tokenizer.save_pretrained(staging)
        for item in sorted(staging.iterdir()):
            os.replace(item, path / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    (path / SPEC_MARKER).write_text(marker, encoding="utf-8")
    return path


def build_tiny_models(root: str | os.PathLike[str], seed: int = 0) -> dict[str, Path]:
    """Build one tiny checkpoint per architecture under ``root/<arch>``."""
    root = Path(root)
    return {
        arch: build_tiny_model(root / arch, TinyModelSpec(arch=arch, seed=seed))
        for arch in ARCHITECTURES
    }


def _marker_text(spec: TinyModelSpec) -> str:
    content = {"recipe_version": _RECIPE_VERSION, "spec": dataclasses.asdict(spec)}
    return json.dumps(content, indent=2, sort_keys=True) + "\n"


def _is_complete(path: Path, marker: str) -> bool:
    marker_path = path / SPEC_MARKER
    if not marker_path.is_file() or marker_path.read_text(encoding="utf-8") != marker:
        return False
    return all((path / name).is_file() for name in _MODEL_FILES)


def _build_tokenizer(spec: TinyModelSpec) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE(unk_token=_UNK))
    if spec.arch in _QWEN2_TOKENIZER_ARCHS:
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=list(_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    bos_id = tokenizer.token_to_id(_BOS)
    # Like Llama and vLLM's default (add_special_tokens=True): prepend BOS.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{_BOS} $A",
        pair=f"{_BOS} $A {_BOS} $B",
        special_tokens=[(_BOS, bos_id)],
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=_BOS,
        eos_token=_EOS,
        unk_token=_UNK,
        pad_token=_PAD,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def _build_config(
    spec: TinyModelSpec, tokenizer: PreTrainedTokenizerFast
) -> PretrainedConfig:
    common = dict(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_position_embeddings,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype=spec.dtype,
    )
    if spec.arch == "llama":
        return LlamaConfig(**common)
    if spec.arch in MOE_ARCHITECTURES:
        return _moe_config(spec, common)
    if spec.arch in MLA_ARCHITECTURES:
        return _mla_config(spec, common)
    if spec.sliding_window is None:
        return Qwen2Config(**common, use_sliding_window=False)
    return Qwen2Config(
        **common,
        use_sliding_window=True,
        sliding_window=spec.sliding_window,
        max_window_layers=0,
    )


def _moe_config(spec: TinyModelSpec, common: dict[str, object]) -> PretrainedConfig:
    experts = dict(num_experts_per_tok=spec.experts_per_token)
    if spec.arch == "mixtral":
        return MixtralConfig(**common, **experts, num_local_experts=spec.num_experts)
    moe = dict(common, moe_intermediate_size=spec.intermediate_size, **experts)
    if spec.arch == "qwen3_moe":
        return Qwen3MoeConfig(**moe, num_experts=spec.num_experts, norm_topk_prob=False)
    return Glm4MoeConfig(
        **moe,
        n_routed_experts=spec.num_experts,
        n_shared_experts=1,
        n_group=_GLM4_MOE_GROUPS,
        topk_group=1,
        routed_scaling_factor=spec.routed_scaling_factor,
        norm_topk_prob=True,
        first_k_dense_replace=1,
    )


def _mla_config(spec: TinyModelSpec, common: dict[str, object]) -> PretrainedConfig:
    # transformers repeats the expanded keys over num_key_value_heads groups (one each
    # here) and sizes the rotary embedding by head_dim (the rope part).
    dims = _MLA_DIMS[spec.mla_dims]
    mla = dict(
        common,
        **dims,
        num_key_value_heads=spec.num_heads,
        head_dim=dims["qk_rope_head_dim"],
        first_k_dense_replace=1 if spec.mla_moe else spec.num_layers,
        n_routed_experts=spec.num_experts,
        n_shared_experts=1,
        num_experts_per_tok=spec.experts_per_token,
        moe_intermediate_size=spec.intermediate_size,
    )
    if spec.arch == "deepseek_v2":
        routing = dict(
            topk_method="group_limited_greedy",
            n_group=_MLA_MOE_GROUPS,
            topk_group=1,
            routed_scaling_factor=_MLA_MOE_ROUTED_SCALING,
        )
        return DeepseekV2Config(**mla, **(routing if spec.mla_moe else {}), q_lora_rank=None)
    rope_theta = mla.pop("rope_theta")
    return DeepseekV3Config(
        **mla,
        q_lora_rank=_MLA_Q_LORA_RANK[spec.mla_dims],
        rope_parameters=dict(_YARN, rope_theta=rope_theta),
        num_nextn_predict_layers=1,
    )


def _add_mtp_layer(weights: Path, spec: TinyModelSpec) -> None:
    """Append a multi-token-prediction layer the way DeepSeek-V3 checkpoints hold it
    (``model.layers.<num_layers>``: a decoder layer plus its projections), which
    transformers and vLLM's main model skip when they load."""
    tensors = load_file(weights)
    mtp = f"model.layers.{spec.num_layers}."
    for name, tensor in list(tensors.items()):
        if name.startswith("model.layers.0."):
            tensors[mtp + name.removeprefix("model.layers.0.")] = tensor.clone()
    hidden = spec.hidden_size
    dtype = getattr(torch, spec.dtype)
    tensors[mtp + "enorm.weight"] = torch.ones(hidden, dtype=dtype)
    tensors[mtp + "hnorm.weight"] = torch.ones(hidden, dtype=dtype)
    tensors[mtp + "eh_proj.weight"] = torch.zeros(hidden, 2 * hidden, dtype=dtype)
    save_file(tensors, weights, metadata={"format": "pt"})


def _weight_std(spec: TinyModelSpec, name: str, param: torch.Tensor) -> float:
    # MLA models with MoE layers or real dimensions are scaled like the MoE models: at
    # _WEIGHT_STD, 512-wide latents make attention logits ~50 apart, where the bfloat16
    # of Ascend's MLA prefill op flips near-ties.
    is_scaled_mla = spec.arch in MLA_ARCHITECTURES and (spec.mla_moe or spec.mla_dims != "tiny")
    if spec.arch not in MOE_ARCHITECTURES and not is_scaled_mla:
        return _WEIGHT_STD
    if "embed_tokens" in name:
        return 1.0
    gain = _MOE_LM_HEAD_GAIN if name.startswith("lm_head") else 1.0
    return gain / param.shape[-1] ** 0.5


def _build_model(
    spec: TinyModelSpec, tokenizer: PreTrainedTokenizerFast
) -> torch.nn.Module:
    config = _build_config(spec, tokenizer)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # A private generator keeps the weights a function of the seed alone and
    # leaves the caller's global RNG state untouched. The large std makes the
    # logits spread out, so greedy decoding yields varied tokens.
    generator = torch.Generator().manual_seed(spec.seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if "norm" in name:
                param.fill_(1.0)
            elif name.endswith(".bias"):
                param.normal_(0.0, _BIAS_STD, generator=generator)
            else:
                param.normal_(0.0, _weight_std(spec, name, param), generator=generator)
        for name, buffer in sorted(model.named_buffers()):
            # DeepSeek-style routers: a bias that steers the choice of experts.
            if name.endswith("e_score_correction_bias"):
                buffer.normal_(0.0, _BIAS_STD, generator=generator)
    model.to(getattr(torch, spec.dtype))
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model.eval()
