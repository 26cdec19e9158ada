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


def hf_greedy_routing_margins(
    model_path: str | os.PathLike[str], prompts: Sequence[str], max_new_tokens: int
) -> list[float]:
    """For each prompt, the smallest gap in a mixture-of-experts router's choice over
    its float32 greedy run (prompt and continuation, every MoE layer); ``inf`` for a
    model without routers.

    A router's choice is a decision like the greedy one: its top-k experts (and, for
    grouped top-k, its best groups) against the best of the rest, compared on what
    the router ranks by (the logits for softmax routing; for grouped sigmoid routing
    the sigmoid scores plus the correction bias, groups by their best two summed).
    Within the rounding error of a lower precision, two correct implementations may
    pick different experts, which changes the output by a whole expert's share.
    """
    model = _greedy_model(model_path, torch.float32)
    routers = [m for m in model.modules() if _is_router(m)]
    margins = []
    with torch.inference_mode():
        for ids in hf_prompt_token_ids(model_path, prompts):
            gaps: list[float] = []

            def record(module: Any, _args: Any, output: Any, gaps: list[float] = gaps) -> None:
                gaps.append(_routing_gap(module, output[0]))

            hooks = [router.register_forward_hook(record) for router in routers]
            try:
                input_ids = torch.tensor([ids], dtype=torch.long)
                model.generate(
                    input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    max_new_tokens=max_new_tokens,
                )
            finally:
                for hook in hooks:
                    hook.remove()
            margins.append(min(gaps, default=float("inf")))
    return margins


def _is_router(module: torch.nn.Module) -> bool:
    """transformers' MoE routers (``*TopKRouter``) return (logits, weights, expert ids)."""
    return type(module).__name__.endswith("Router") and hasattr(module, "top_k")


def _routing_gap(router: Any, router_logits: torch.Tensor) -> float:
    choice = router_logits.float().view(-1, router_logits.shape[-1])
    top_k = int(router.top_k)
    gaps = []
    groups = int(getattr(router, "num_group", 1) or 1)
    if groups > 1:
        choice = choice.sigmoid() + router.e_score_correction_bias.float()
        grouped = choice.view(choice.shape[0], groups, -1)
        group_scores = grouped.topk(2, dim=-1).values.sum(dim=-1)
        chosen_groups = int(router.topk_group)
        gaps.append(_kth_gap(group_scores, chosen_groups))
        kept = group_scores.topk(chosen_groups, dim=-1).indices
        mask = torch.ones_like(group_scores, dtype=torch.bool).scatter_(1, kept, False)
        choice = grouped.masked_fill(mask.unsqueeze(-1), float("-inf")).view_as(choice)
    gaps.append(_kth_gap(choice, top_k))
    return min(gaps)


def _kth_gap(scores: torch.Tensor, k: int) -> float:
    """Smallest gap, over the rows, between the k-th best score and the next."""
    ranked = scores.sort(dim=-1, descending=True).values
    return float((ranked[:, k - 1] - ranked[:, k]).min())


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
