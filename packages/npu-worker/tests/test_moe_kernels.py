"""MoE kernels: routing and experts against a naive per-token loop, ties and idle
experts included; the Ascend set on the torch_npu stand-in against the reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vllm_npu.testing.standin import installed
from vllm_npu.worker.kernels import MoERouting, available_moe_kernels, get_moe_kernels

REFERENCE = get_moe_kernels("reference")
ASCEND = get_moe_kernels("ascend")

ROUTINGS = {
    "softmax-renormalised": (MoERouting(top_k=2, renormalize=True), False),
    "softmax": (MoERouting(top_k=3), False),
    "grouped-softmax": (MoERouting(top_k=2, num_expert_group=4, topk_group=2), False),
    "deepseek-v3": (
        MoERouting(
            top_k=2,
            scoring="sigmoid",
            renormalize=True,
            num_expert_group=4,
            topk_group=2,
            routed_scaling_factor=2.5,
        ),
        True,
    ),
    "sigmoid-scaled": (MoERouting(top_k=1, scoring="sigmoid", renormalize=True), True),
}


def naive_route(logits: torch.Tensor, routing: MoERouting, bias: torch.Tensor | None):
    """One token at a time, with Python sorting: the rule MoERouting documents."""
    weights, ids = [], []
    for row in logits.float():
        scores = row.softmax(-1) if routing.scoring == "softmax" else row.sigmoid()
        choice = (scores + bias if bias is not None else scores).tolist()
        candidates = list(range(len(choice)))
        if routing.grouped:
            size = len(choice) // routing.num_expert_group
            groups = [choice[g * size : (g + 1) * size] for g in range(routing.num_expert_group)]
            rank = [
                sum(sorted(group, reverse=True)[:2]) if bias is not None else max(group)
                for group in groups
            ]
            best = sorted(range(len(groups)), key=lambda g: -rank[g])[: routing.topk_group]
            candidates = [e for e in candidates if e // size in best]
        chosen = sorted(candidates, key=lambda e: -choice[e])[: routing.top_k]
        picked = [scores[e].item() for e in chosen]
        if routing.renormalize:
            picked = [w / sum(picked) for w in picked]
        weights.append([w * routing.routed_scaling_factor for w in picked])
        ids.append(chosen)
    return torch.tensor(weights), torch.tensor(ids)


def naive_experts(x, w13, w2, weights, ids, expert_map=None):
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for w, e in zip(weights[t].tolist(), ids[t].tolist(), strict=True):
            local = e if expert_map is None else int(expert_map[e])
            if local < 0:
                continue
            gate, up = (w13[local] @ x[t]).chunk(2)
            out[t] += w * (w2[local] @ (F.silu(gate) * up))
    return out


def _inputs(tokens=9, experts=8, hidden=16, intermediate=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(tokens, experts, generator=g),
        torch.randn(tokens, hidden, generator=g),
        torch.randn(experts, 2 * intermediate, hidden, generator=g) * 0.3,
        torch.randn(experts, hidden, intermediate, generator=g) * 0.3,
        torch.randn(experts, generator=g) * 0.1,
    )


def test_both_sets_are_registered() -> None:
    assert {"reference", "ascend"} <= set(available_moe_kernels())
    with pytest.raises(ValueError, match="unknown MoE kernel set 'nope'"):
        get_moe_kernels("nope")


@pytest.mark.parametrize("name", sorted(ROUTINGS))
def test_reference_routing_matches_a_per_token_loop(name: str) -> None:
    routing, biased = ROUTINGS[name]
    logits, *_, bias = _inputs(tokens=33, experts=16)
    bias = bias if biased else None
    weights, ids = REFERENCE.select_experts(logits, routing, correction_bias=bias)
    expected_weights, expected_ids = naive_route(logits, routing, bias)
    assert torch.equal(ids, expected_ids)
    torch.testing.assert_close(weights, expected_weights)


def test_ties_go_to_the_lower_expert_id() -> None:
    logits = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]])
    _, ids = REFERENCE.select_experts(logits, MoERouting(top_k=2))
    assert ids.tolist() == [[1, 2], [0, 1]]
    assert torch.equal(ids, naive_route(logits, MoERouting(top_k=2), None)[1])
    grouped = MoERouting(top_k=2, num_expert_group=2, topk_group=1)
    _, ids = REFERENCE.select_experts(logits, grouped)
    assert ids.tolist() == [[1, 2], [0, 1]]


def test_experts_match_a_per_token_loop_with_idle_experts() -> None:
    logits, x, w13, w2, _ = _inputs(tokens=5, experts=8)
    logits[:, 5:] = -30.0  # experts 5-7 receive no token
    weights, ids = REFERENCE.select_experts(logits, MoERouting(top_k=2, renormalize=True))
    assert set(ids.flatten().tolist()) <= set(range(5))
    out = REFERENCE.fused_experts(x, w13, w2, weights, ids)
    torch.testing.assert_close(out, naive_experts(x, w13, w2, weights, ids))


def test_expert_parallel_shards_add_up_to_the_whole() -> None:
    logits, x, w13, w2, _ = _inputs(tokens=7, experts=8)
    weights, ids = REFERENCE.select_experts(logits, MoERouting(top_k=3))
    whole = REFERENCE.fused_experts(x, w13, w2, weights, ids)
    parts = []
    for rank in range(2):
        expert_map = torch.full((8,), -1, dtype=torch.int32)
        expert_map[rank * 4 : rank * 4 + 4] = torch.arange(4, dtype=torch.int32)
        shard = slice(rank * 4, rank * 4 + 4)
        part = REFERENCE.fused_experts(
            x, w13[shard], w2[shard], weights, ids, expert_map=expert_map
        )
        torch.testing.assert_close(
            part, naive_experts(x, w13[shard], w2[shard], weights, ids, expert_map)
        )
        parts.append(part)
    torch.testing.assert_close(parts[0] + parts[1], whole)


def test_no_tokens() -> None:
    _, x, w13, w2, _ = _inputs(tokens=0)
    ids = torch.zeros(0, 2, dtype=torch.long)
    out = REFERENCE.fused_experts(x, w13, w2, torch.zeros(0, 2), ids)
    assert out.shape == (0, 16)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("name", sorted(ROUTINGS))
def test_ascend_set_on_the_standin_matches_the_reference(name: str, dtype) -> None:
    routing, biased = ROUTINGS[name]
    # npu_moe_gating_top_k needs more than 2 experts per group.
    logits, x, w13, w2, bias = _inputs(tokens=11, experts=16)
    bias = bias if biased else None
    with installed():
        weights, ids = ASCEND.select_experts(logits.to(dtype), routing, correction_bias=bias)
        ref_weights, ref_ids = REFERENCE.select_experts(
            logits.to(dtype), routing, correction_bias=bias
        )
        assert torch.equal(ids.long(), ref_ids)
        torch.testing.assert_close(weights, ref_weights, atol=2e-3, rtol=2e-3)
        out = ASCEND.fused_experts(x.to(dtype), w13.to(dtype), w2.to(dtype), weights, ids)
    expected = REFERENCE.fused_experts(x, w13, w2, ref_weights, ref_ids)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.float(), expected, atol=tolerance, rtol=tolerance)


def test_ascend_set_with_an_expert_map_on_the_standin() -> None:
    logits, x, w13, w2, _ = _inputs(tokens=6, experts=8)
    weights, ids = REFERENCE.select_experts(logits, MoERouting(top_k=2))
    expert_map = torch.tensor([-1, -1, -1, -1, 0, 1, 2, 3], dtype=torch.int32)
    with installed():
        out = ASCEND.fused_experts(x, w13[4:], w2[4:], weights, ids, expert_map=expert_map)
    expected = REFERENCE.fused_experts(x, w13[4:], w2[4:], weights, ids, expert_map=expert_map)
    torch.testing.assert_close(out, expected)


def test_unsupported_features_are_named() -> None:
    routing = MoERouting(top_k=2, scoring="sqrtsoftplus")
    assert REFERENCE.unsupported(
        routing=routing, activation="relu2_no_mul", num_experts=8, expert_bias=True
    ) == ["scoring function 'sqrtsoftplus'", "activation 'relu2_no_mul'", "expert MLP biases"]
    sigmoid = MoERouting(top_k=2, scoring="sigmoid", num_expert_group=4, topk_group=1)
    assert ASCEND.unsupported(
        routing=sigmoid, activation="gelu", num_experts=8, expert_bias=False
    ) == [
        "activation 'gelu'",
        "sigmoid routing without renormalisation",
        "groups of 2 experts",
    ]
    assert (
        REFERENCE.unsupported(
            routing=MoERouting(top_k=2), activation="silu", num_experts=8, expert_bias=False
        )
        == []
    )
