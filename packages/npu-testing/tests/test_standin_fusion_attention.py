"""The stand-in's ``npu_fusion_attention`` (what transformers imports on an NPU)
against PyTorch's scaled_dot_product_attention, and its rejections."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vllm_npu.testing.standin import installed


@pytest.fixture(scope="module")
def torch_npu():
    with installed() as module:
        yield module


def _qkv(batch=2, heads=4, kv_heads=2, q_len=5, kv_len=7, dim=8, dtype=torch.float32):
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(batch, heads, q_len, dim, generator=generator).to(dtype)
    k = torch.randn(batch, kv_heads, kv_len, dim, generator=generator).to(dtype)
    v = torch.randn(batch, kv_heads, kv_len, dim, generator=generator).to(dtype)
    return q, k, v


def _sdpa(q, k, v, scale, mask=None):
    group = q.shape[1] // k.shape[1]
    k, v = (t.float().repeat_interleave(group, dim=1) for t in (k, v))
    allowed = None if mask is None else ~mask
    return F.scaled_dot_product_attention(q.float(), k, v, attn_mask=allowed, scale=scale)


@pytest.mark.parametrize("layout", ["BNSD", "BSND", "BSH", "SBH"])
def test_layouts_match_sdpa(torch_npu, layout: str) -> None:
    q, k, v = _qkv()
    to_layout = {
        "BNSD": lambda t: t,
        "BSND": lambda t: t.transpose(1, 2).contiguous(),
        "BSH": lambda t: t.transpose(1, 2).flatten(2).contiguous(),
        "SBH": lambda t: t.transpose(1, 2).flatten(2).transpose(0, 1).contiguous(),
    }[layout]
    out, softmax_max, softmax_sum, *_ = torch_npu.npu_fusion_attention(
        to_layout(q), to_layout(k), to_layout(v), 4, layout, scale=0.3
    )
    torch.testing.assert_close(out, to_layout(_sdpa(q, k, v, 0.3)))
    assert softmax_max.shape == softmax_sum.shape == (2, 4, 5, 8)


@pytest.mark.parametrize("sparse_mode", [2, 3])
def test_compressed_causal_masks(torch_npu, sparse_mode: int) -> None:
    q, k, v = _qkv(dtype=torch.float16)
    causal = torch.triu(torch.ones(2048, 2048, dtype=torch.bool), diagonal=1)
    offset = 2 if sparse_mode == 3 else 0  # kv_len - q_len, bottom-right aligned
    hidden = torch.arange(7)[None, :] > torch.arange(5)[:, None] + offset
    out = torch_npu.npu_fusion_attention(
        q, k, v, 4, "BNSD", atten_mask=causal, scale=0.5, sparse_mode=sparse_mode
    )[0]
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), _sdpa(q, k, v, 0.5, hidden), atol=2e-3, rtol=2e-3)


def test_explicit_mask(torch_npu) -> None:
    q, k, v = _qkv()
    mask = torch.rand(5, 7, generator=torch.Generator().manual_seed(1)) > 0.6
    mask[:, 0] = False
    out = torch_npu.npu_fusion_attention(q, k, v, 4, "BNSD", atten_mask=mask, scale=1.0)[0]
    torch.testing.assert_close(out, _sdpa(q, k, v, 1.0, mask))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(input_layout="NSD"), RuntimeError, "input_layout must be one of"),
        (dict(input_layout="TND"), NotImplementedError, "TND"),
        (dict(keep_prob=0.9), NotImplementedError, "dropout"),
        (dict(sparse_mode=4), NotImplementedError, "sparse_mode 4"),
        (dict(sparse_mode=3), RuntimeError, "2048x2048 causal mask"),
        (dict(head_num=3), RuntimeError, "head_num 3 but query has 4 heads"),
        (dict(atten_mask=torch.zeros(5, 5, dtype=torch.bool)), RuntimeError, "atten_mask must be"),
        (dict(pre_tockens=4), NotImplementedError, "pre_tockens"),
    ],
)
def test_rejections(torch_npu, kwargs, error, match) -> None:
    q, k, v = _qkv()
    arguments = {"head_num": 4, "input_layout": "BNSD", **kwargs}
    with pytest.raises(error, match=match):
        torch_npu.npu_fusion_attention(q, k, v, **arguments)


def test_rejects_int_and_mixed_dtypes(torch_npu) -> None:
    q, k, v = _qkv()
    with pytest.raises(RuntimeError, match="must be float16, bfloat16 or float32"):
        torch_npu.npu_fusion_attention(q.int(), k, v, 4, "BNSD")
    with pytest.raises(RuntimeError, match="share a dtype"):
        torch_npu.npu_fusion_attention(q.half(), k, v, 4, "BNSD")
