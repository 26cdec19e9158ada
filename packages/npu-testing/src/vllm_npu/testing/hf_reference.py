"""Hugging Face greedy-decoding reference for comparing vLLM outputs in tests.

Prompts are tokenized the way vLLM does by default and decoding never stops at
EOS, which matches vLLM sampling with ``temperature=0`` and ``ignore_eos=True``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig


def hf_prompt_token_ids(
    model_path: str | os.PathLike[str], prompts: Sequence[str]
) -> list[list[int]]:
    """Token ids of each prompt, with special tokens added as vLLM does."""
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return [
        list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
        for prompt in prompts
    ]


def hf_greedy_generate(
    model_path: str | os.PathLike[str],
    prompts: Sequence[str],
    max_new_tokens: int,
    dtype: torch.dtype = torch.float32,
) -> list[list[int]]:
    """Greedy-decode exactly ``max_new_tokens`` tokens per prompt on the CPU.

    Prompts are tokenized as vLLM does (special tokens added); see
    ``hf_greedy_generate_ids``. Returns only the generated token ids.
    """
    return hf_greedy_generate_ids(
        model_path, hf_prompt_token_ids(model_path, prompts), max_new_tokens, dtype
    )


def hf_greedy_generate_ids(
    model_path: str | os.PathLike[str],
    prompt_token_ids: Sequence[Sequence[int]],
    max_new_tokens: int,
    dtype: torch.dtype = torch.float32,
) -> list[list[int]]:
    """Greedy-decode exactly ``max_new_tokens`` tokens after each tokenized prompt.

    Each prompt runs alone (no padding) in ``dtype`` with eager attention.
    Returns only the generated token ids, one list per prompt.
    """
    model = _greedy_model(model_path, dtype)
    outputs = []
    with torch.inference_mode():
        for ids in prompt_token_ids:
            input_ids = torch.tensor([list(ids)], dtype=torch.long)
            generated = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new_tokens,
            )
            outputs.append(generated[0, len(ids) :].tolist())
    return outputs


def hf_greedy_margins(
    model_path: str | os.PathLike[str], prompts: Sequence[str], max_new_tokens: int
) -> list[float]:
    """For each prompt, the smallest gap between the best and second-best logit over
    its float32 greedy continuation.

    A gap below the rounding error of a lower precision (float16: about 1e-2 on
    these models) is a near-tie that any two correct float16 implementations may
    break differently; parity tests in float16 use prompts with clear decisions.
    """
    model = _greedy_model(model_path, torch.float32)
    margins = []
    with torch.inference_mode():
        for ids in hf_prompt_token_ids(model_path, prompts):
            input_ids = torch.tensor([ids], dtype=torch.long)
            generated = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new_tokens,
                output_logits=True,
                return_dict_in_generate=True,
            )
            top2 = torch.stack(generated.logits).float().topk(2, dim=-1).values
            margins.append(float((top2[..., 0] - top2[..., 1]).min()))
    return margins


def _greedy_model(model_path: str | os.PathLike[str], dtype: torch.dtype) -> Any:
    """The checkpoint in ``dtype`` with eager attention, set up for plain greedy decoding."""
    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=dtype, attn_implementation="eager"
    ).eval()
    # generate() fills every unset option from model.generation_config, so
    # replace it: no EOS to stop at and none of the checkpoint's sampling
    # defaults (repetition penalty and the like) to bend the argmax.
    model.generation_config = GenerationConfig(
        do_sample=False,
        num_beams=1,
        bos_token_id=model.config.bos_token_id,
        pad_token_id=model.config.pad_token_id,
    )
    return model
