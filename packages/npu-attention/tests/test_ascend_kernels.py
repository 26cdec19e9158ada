"""The ascend kernel set, run on the torch_npu stand-in, against the reference set.

Both sets get the same requests: the same cached prefix K/V (each in its own cache
layout), the same new tokens written through each set's ``write_kv_cache``, the
same queries. Their caches must then hold the same values and their attention the
same output, within the rounding of a float16/bfloat16 result.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import torch
import vllm.platforms
from torch import Tensor

from vllm_npu.attention import NPUAttentionBackend, NPUAttentionImpl, NPUAttentionMetadata
from vllm_npu.attention.backend import kernels_for_current_device
from vllm_npu.attention.kernels import AttentionKernels, HostLengths, _ascend, get_kernels
from vllm_npu.testing.standin import installed

ASCEND = get_kernels("ascend")
REFERENCE = get_kernels("reference")
BLOCK_SIZE = 128
SENTINEL = 7.0
TOLERANCES = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
DTYPES = list(TOLERANCES)
PADDING_ROWS = 2


@pytest.fixture(scope="module")
def torch_npu() -> Iterator[ModuleType]:
    with installed() as module:
        yield module


@pytest.fixture
def npu_calls(torch_npu: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the stand-in ops called, in order (the ops still compute)."""
    calls: list[str] = []
    for name in (
        "_npu_reshape_and_cache",
        "_npu_paged_attention",
        "npu_fused_infer_attention_score",
    ):
        monkeypatch.setattr(torch_npu, name, _recording(getattr(torch_npu, name), calls))
    return calls


def _recording(op: Callable, calls: list[str]) -> Callable:
    def call(*args, **kwargs):
        calls.append(op.__name__)
        return op(*args, **kwargs)

    return call


@dataclass(frozen=True)
class Req:
    seq_len: int
    query_len: int


@dataclass
class Batch:
    query: Tensor  # [num_tokens + PADDING_ROWS, heads, d]
    key: Tensor  # new tokens' K (and padding rows)
    value: Tensor
    slot_mapping: Tensor  # int64 as vLLM has it; -1 on padding rows, then stray entries
    block_table: Tensor  # int32
    query_start_loc: Tensor  # int32
    seq_lens: Tensor  # int32
    reference_cache: Tensor  # [num_blocks, kv_heads, block_size, 2 * d]
    ascend_cache: Tensor  # [2, num_blocks, block_size, kv_heads, d]
    num_tokens: int


def make_batch(
    reqs: list[Req], *, heads: int = 8, kv_heads: int = 2, head_size: int = 16, dtype=torch.float16
) -> Batch:
    """Requests whose earlier tokens are cached in both layouts (unwritten slots NaN)
    and whose new tokens (with padding tokens) are ready to be written."""
    gen = torch.Generator().manual_seed(7)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen).to(dtype)

    blocks_needed = [-(-r.seq_len // BLOCK_SIZE) for r in reqs]
    num_blocks = sum(blocks_needed) + 2
    pool = torch.randperm(num_blocks, generator=gen).tolist()
    reference_cache = torch.full(
        (num_blocks, kv_heads, BLOCK_SIZE, 2 * head_size), math.nan, dtype=dtype
    )
    ascend_cache = torch.full(
        ASCEND.kv_cache_shape(num_blocks, BLOCK_SIZE, kv_heads, head_size), math.nan, dtype=dtype
    )
    tables, slots, keys, values = [], [], [], []
    for r, needed in zip(reqs, blocks_needed, strict=True):
        blocks = [pool.pop() for _ in range(needed)]
        tables.append(blocks + [pool[0]] * (max(blocks_needed) + 1 - needed))
        k, v = randn(r.seq_len, kv_heads, head_size), randn(r.seq_len, kv_heads, head_size)
        for pos in range(r.seq_len):
            block, offset = blocks[pos // BLOCK_SIZE], pos % BLOCK_SIZE
            if pos < r.seq_len - r.query_len:  # cached by an earlier step
                reference_cache[block, :, offset] = torch.cat([k[pos], v[pos]], dim=-1)
                ascend_cache[0, block, offset], ascend_cache[1, block, offset] = k[pos], v[pos]
            else:
                slots.append(block * BLOCK_SIZE + offset)
        keys.append(k[r.seq_len - r.query_len :])
        values.append(v[r.seq_len - r.query_len :])
    num_tokens = len(slots)
    query_start_loc = [0]
    for r in reqs:
        query_start_loc.append(query_start_loc[-1] + r.query_len)
    return Batch(
        query=randn(num_tokens + PADDING_ROWS, heads, head_size),
        key=torch.cat([*keys, randn(PADDING_ROWS, kv_heads, head_size)]),
        value=torch.cat([*values, randn(PADDING_ROWS, kv_heads, head_size)]),
        slot_mapping=torch.tensor(slots + [-1] * PADDING_ROWS + [0, 5]),
        block_table=torch.tensor(tables, dtype=torch.int32),
        query_start_loc=torch.tensor(query_start_loc, dtype=torch.int32),
        seq_lens=torch.tensor([r.seq_len for r in reqs], dtype=torch.int32),
        reference_cache=reference_cache,
        ascend_cache=ascend_cache,
        num_tokens=num_tokens,
    )


def run(kernels: AttentionKernels, batch: Batch, kv_cache: Tensor) -> Tensor:
    kernels.write_kv_cache(batch.key, batch.value, kv_cache, batch.slot_mapping)
    output = torch.full_like(batch.query, SENTINEL)
    result = kernels.paged_attention(
        batch.query,
        kv_cache,
        batch.block_table,
        batch.query_start_loc,
        batch.seq_lens,
        scale=batch.query.shape[-1] ** -0.5,
        output=output,
        host_lengths=HostLengths.from_host(batch.query_start_loc, batch.seq_lens),
    )
    assert result is output
    return output


def assert_same_cache(batch: Batch) -> None:
    """The ascend cache, seen in the reference layout, equals the reference cache
    (NaN where neither wrote)."""
    head_size = batch.ascend_cache.shape[-1]
    for half, ascend_half in enumerate(batch.ascend_cache):
        reference_half = batch.reference_cache[..., half * head_size : (half + 1) * head_size]
        as_reference = ascend_half.transpose(1, 2)
        assert torch.equal(as_reference.isnan(), reference_half.isnan())
        assert torch.equal(as_reference.nan_to_num(), reference_half.nan_to_num())


def check(batch: Batch) -> Tensor:
    """Both sets on the batch: same caches, same attention; returns the ascend output."""
    expected = run(REFERENCE, batch, batch.reference_cache)
    actual = run(ASCEND, batch, batch.ascend_cache)
    assert_same_cache(batch)
    assert (actual[batch.num_tokens :] == SENTINEL).all(), "padding rows were written"
    assert not actual[: batch.num_tokens].isnan().any()
    tol = TOLERANCES[batch.query.dtype]
    torch.testing.assert_close(actual.float(), expected.float(), atol=tol, rtol=tol)
    return actual


SCENARIOS = {
    "prefill": [Req(5, 5), Req(130, 130), Req(1, 1), Req(256, 256)],
    "chunked_prefill": [Req(300, 40), Req(150, 22)],
    "decode": [Req(1, 1), Req(129, 1), Req(257, 1), Req(64, 1)],
    "mixed": [Req(200, 1), Req(140, 20), Req(10, 0), Req(260, 7), Req(3, 1)],
}
OPS_BY_SCENARIO = {
    "prefill": "npu_fused_infer_attention_score",
    "chunked_prefill": "npu_fused_infer_attention_score",
    "decode": "_npu_paged_attention",
    "mixed": "npu_fused_infer_attention_score",
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_matches_reference(scenario: str, dtype: torch.dtype, npu_calls: list[str]) -> None:
    check(make_batch(SCENARIOS[scenario], dtype=dtype))
    assert npu_calls == ["_npu_reshape_and_cache", OPS_BY_SCENARIO[scenario]]


@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 4), (8, 2), (8, 1)], ids=["MHA", "GQA", "MQA"])
@pytest.mark.parametrize("scenario", ["decode", "mixed"])
def test_grouped_and_multi_query_heads(
    scenario: str, heads: int, kv_heads: int, torch_npu: ModuleType
) -> None:
    check(make_batch(SCENARIOS[scenario], heads=heads, kv_heads=kv_heads))


def test_padding_is_passed_to_the_op_which_leaves_it_unwritten(npu_calls: list[str]) -> None:
    """Slot -1 goes to ``_npu_reshape_and_cache`` as it is (filtering it would read the
    slot mapping back from the device); the op writes nothing for it."""
    batch = make_batch([Req(3, 1)])
    before = batch.ascend_cache.clone()
    ASCEND.write_kv_cache(batch.key, batch.value, batch.ascend_cache, torch.tensor([-1, -1, -1]))
    assert npu_calls == ["_npu_reshape_and_cache"]
    assert torch.equal(batch.ascend_cache.isnan(), before.isnan())


def test_ascend_attention_needs_host_lengths(torch_npu: ModuleType) -> None:
    batch = make_batch(SCENARIOS["decode"])
    with pytest.raises(ValueError, match="need host_lengths"):
        ASCEND.paged_attention(
            batch.query,
            batch.ascend_cache,
            batch.block_table,
            batch.query_start_loc,
            batch.seq_lens,
            scale=1.0,
            output=torch.empty_like(batch.query),
        )


def test_query_rows_after_an_offset(torch_npu: ModuleType) -> None:
    """A batch whose first request starts at row 2 (as the prefill part of a batch)
    leaves rows 0 and 1 untouched, as the reference does."""
    batch = make_batch(SCENARIOS["mixed"], dtype=torch.bfloat16)
    offset = torch.randn(2, *batch.query.shape[1:]).to(batch.query.dtype)
    batch.query = torch.cat([offset, batch.query])
    batch.query_start_loc = batch.query_start_loc + 2
    batch.slot_mapping = torch.cat([torch.tensor([-1, -1]), batch.slot_mapping])
    batch.key = torch.cat([offset[:, : batch.key.shape[1]], batch.key])
    batch.value = torch.cat([offset[:, : batch.value.shape[1]], batch.value])
    batch.num_tokens += 2
    output = check(batch)
    assert (output[:2] == SENTINEL).all()


def test_backend_forward_with_ascend_kernels(
    torch_npu: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NPUAttentionImpl on the ascend set (decodes and prefills attended apart) equals
    the reference set on the whole batch."""
    use_device_backend(monkeypatch, kernel_set="ascend")
    reqs = [Req(129, 1), Req(40, 1), Req(300, 30), Req(9, 9)]  # decodes first
    batch = make_batch(reqs, dtype=torch.bfloat16)
    expected = run(REFERENCE, batch, batch.reference_cache)
    impl = NPUAttentionImpl(
        num_heads=8,
        head_size=16,
        scale=16**-0.5,
        num_kv_heads=2,
        alibi_slopes=None,
        sliding_window=None,
        kv_cache_dtype="auto",
    )
    assert impl.kernels is ASCEND
    impl.do_kv_cache_update(None, batch.key, batch.value, batch.ascend_cache, batch.slot_mapping)
    metadata = NPUAttentionMetadata(
        num_actual_tokens=batch.num_tokens,
        max_query_len=30,
        max_seq_len=300,
        query_start_loc=batch.query_start_loc,
        seq_lens=batch.seq_lens,
        block_table=batch.block_table,
        slot_mapping=batch.slot_mapping,
        num_decodes=2,
        num_decode_tokens=2,
        prefill_query_start_loc=batch.query_start_loc[2:] - 2,
        decode_lengths=HostLengths.from_host(batch.query_start_loc[:3], batch.seq_lens[:2]),
        prefill_lengths=HostLengths.from_host(batch.query_start_loc[2:] - 2, batch.seq_lens[2:]),
    )
    output = torch.full_like(batch.query, SENTINEL)
    impl.forward(None, batch.query, None, None, batch.ascend_cache, metadata, output=output)
    assert_same_cache(batch)
    torch.testing.assert_close(output.float(), expected.float(), atol=1.6e-2, rtol=1.6e-2)


def test_refuses_sliding_window_and_soft_cap(torch_npu: ModuleType) -> None:
    batch = make_batch(SCENARIOS["decode"])
    for option, named in (("sliding_window", "sliding window"), ("logits_soft_cap", "soft-cap")):
        with pytest.raises(NotImplementedError, match=named):
            ASCEND.paged_attention(
                batch.query,
                batch.ascend_cache,
                batch.block_table,
                batch.query_start_loc,
                batch.seq_lens,
                scale=1.0,
                output=torch.empty_like(batch.query),
                **{option: 4},
            )


@pytest.mark.parametrize(
    "kv_cache",
    [
        torch.zeros(4, 2, BLOCK_SIZE, 32, dtype=torch.float16),  # the reference layout
        torch.zeros(2, 4, 16, 2, 16, dtype=torch.float16),  # block size 16
        torch.zeros(4, 2, BLOCK_SIZE, 2, 16, dtype=torch.float16).transpose(0, 1),  # strided
    ],
    ids=["reference-layout", "block-size-16", "non-contiguous"],
)
def test_refuses_other_cache_layouts(kv_cache: Tensor) -> None:
    with pytest.raises(ValueError, match=r"\(2, num_blocks, 128, num_kv_heads, head_size\)"):
        ASCEND.write_kv_cache(
            torch.zeros(1, 2, 16), torch.zeros(1, 2, 16), kv_cache, torch.tensor([0])
        )


def test_write_refuses_short_slot_mapping() -> None:
    kv_cache = torch.zeros(ASCEND.kv_cache_shape(2, BLOCK_SIZE, 1, 4), dtype=torch.float16)
    with pytest.raises(ValueError, match="2 entries for 3 tokens"):
        ASCEND.write_kv_cache(
            torch.ones(3, 1, 4), torch.ones(3, 1, 4), kv_cache, torch.tensor([0, 1])
        )


def test_protocol_attributes() -> None:
    assert isinstance(ASCEND, AttentionKernels)
    assert ASCEND.name == "ascend"
    assert (ASCEND.block_size, REFERENCE.block_size) == (128, None)
    assert ASCEND.dtypes == (torch.float16, torch.bfloat16)
    assert REFERENCE.dtypes == (torch.float16, torch.bfloat16, torch.float32)
    assert ASCEND.kv_cache_shape(10, 128, 4, 64) == (2, 10, 128, 4, 64)
    assert REFERENCE.kv_cache_shape(10, 16, 4, 64) is None
    with pytest.raises(ValueError, match="block_size 128, got 16"):
        ASCEND.kv_cache_shape(10, 16, 4, 64)


def test_unsupported_features() -> None:
    none = dict(sliding_window=None, logits_soft_cap=None)
    assert ASCEND.unsupported(**none) == []
    assert ASCEND.unsupported(sliding_window=512, logits_soft_cap=None) == ["sliding window (512)"]
    assert ASCEND.unsupported(sliding_window=None, logits_soft_cap=30.0) == [
        "logits soft-cap (30.0)"
    ]
    assert ASCEND.unsupported(sliding_window=None, logits_soft_cap=0.0) == []
    assert REFERENCE.unsupported(**none) == []
    assert REFERENCE.unsupported(sliding_window=512, logits_soft_cap=30.0) == []


def test_module_imports_without_torch_npu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh copy of the module loads while ``import torch_npu`` fails; its ops
    fail then, at the import."""
    monkeypatch.setitem(sys.modules, "torch_npu", None)  # makes `import torch_npu` raise
    spec = importlib.util.spec_from_file_location("fresh_ascend_kernels", _ascend.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kv_cache = torch.zeros(module.ASCEND_KERNELS.kv_cache_shape(2, 128, 1, 4))
    with pytest.raises(ImportError, match="torch_npu"):
        module.write_kv_cache(torch.ones(1, 1, 4), torch.ones(1, 1, 4), kv_cache, torch.tensor([3]))


def use_device_backend(monkeypatch: pytest.MonkeyPatch, **backend_attributes: str) -> None:
    """Make vLLM's current platform one with a device backend of these attributes."""
    backend = SimpleNamespace(name="test", **backend_attributes)
    monkeypatch.setattr(vllm.platforms, "_current_platform", SimpleNamespace(backend=backend))


def test_kernels_follow_the_device_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    use_device_backend(monkeypatch, kernel_set="ascend")
    assert kernels_for_current_device() is ASCEND
    assert NPUAttentionBackend.get_supported_kernel_block_sizes() == [128]
    assert NPUAttentionBackend.get_supported_kernel_block_sizes(None) == [128]
    use_device_backend(monkeypatch, kernel_set="reference")
    assert kernels_for_current_device() is REFERENCE
    default = NPUAttentionBackend.get_supported_kernel_block_sizes()
    assert [getattr(size, "base", size) for size in default] == [1], "vLLM's default"


def test_platform_without_device_backend_uses_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(vllm.platforms, "_current_platform", SimpleNamespace())
    assert kernels_for_current_device() is REFERENCE


def test_device_backend_without_kernel_set_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    use_device_backend(monkeypatch)
    with pytest.raises(TypeError, match="'test' names no attention kernel set"):
        kernels_for_current_device()


def test_impl_refuses_what_the_kernels_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    use_device_backend(monkeypatch, kernel_set="ascend")
    fields = dict(
        num_heads=8,
        head_size=16,
        scale=0.25,
        num_kv_heads=2,
        alibi_slopes=[0.5] * 8,
        sliding_window=128,
        kv_cache_dtype="auto",
        logits_soft_cap=50.0,
    )
    with pytest.raises(NotImplementedError) as raised:
        NPUAttentionImpl(**fields)
    assert str(raised.value).startswith(
        "vllm-npu attention (ascend kernels) does not support sliding window (128), "
        "logits soft-cap (50.0), ALiBi; select another attention backend with "
        "VLLM_NPU_ATTENTION_BACKEND."
    )
    use_device_backend(monkeypatch, kernel_set="reference")
    with pytest.raises(NotImplementedError, match=r"\(reference kernels\) does not support ALiBi;"):
        NPUAttentionImpl(**fields)


def _common_metadata(batch: Batch, num_reqs: int, npu: Callable[[Tensor], Tensor]) -> Any:
    """vLLM's CommonAttentionMetadata for ``batch``: device tensors through ``npu``,
    the CPU copies vLLM keeps (which field holds the host seq_lens varies by release)."""
    from dataclasses import fields

    from vllm.v1.attention.backend import CommonAttentionMetadata

    names = {field.name for field in fields(CommonAttentionMetadata)}
    host_seq_lens = batch.seq_lens.clone()
    optional = {
        "seq_lens_cpu_upper_bound": host_seq_lens,
        "_seq_lens_cpu": host_seq_lens,
    }
    query_lens = (batch.query_start_loc[1:] - batch.query_start_loc[:-1]).tolist()
    return CommonAttentionMetadata(
        query_start_loc=npu(batch.query_start_loc.clone()),
        query_start_loc_cpu=batch.query_start_loc.clone(),
        seq_lens=npu(batch.seq_lens.clone()),
        num_reqs=num_reqs,
        num_actual_tokens=batch.num_tokens,
        max_query_len=max(query_lens),
        max_seq_len=int(batch.seq_lens.max()),
        block_table_tensor=npu(batch.block_table.clone()),
        slot_mapping=npu(batch.slot_mapping.clone()),
        **{name: value for name, value in optional.items() if name in names},
    )


def test_no_device_reads_per_layer(torch_npu: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """One step of a mixed batch through the metadata builder and four attention
    layers on the ascend kernels: nothing reads NPU data back to the host (the
    stand-in counts every .tolist()/.item()/.cpu()/.to(device) of a device tensor),
    and the result equals the reference kernels'."""
    from torch_npu._device import counting_host_reads, to_npu

    from vllm_npu.attention import NPUAttentionMetadataBuilder

    use_device_backend(monkeypatch, kernel_set="ascend")
    reqs = [Req(129, 1), Req(40, 1), Req(300, 30), Req(9, 9)]  # decodes first
    batch = make_batch(reqs, dtype=torch.bfloat16)
    expected = run(REFERENCE, batch, batch.reference_cache)
    common = _common_metadata(batch, len(reqs), to_npu)
    impl = NPUAttentionImpl(
        num_heads=8,
        head_size=16,
        scale=16**-0.5,
        num_kv_heads=2,
        alibi_slopes=None,
        sliding_window=None,
        kv_cache_dtype="auto",
    )
    # build() reads only the common metadata, not the builder's configuration.
    builder = NPUAttentionMetadataBuilder.__new__(NPUAttentionMetadataBuilder)
    query, key, value = (to_npu(t) for t in (batch.query, batch.key, batch.value))
    layers = [to_npu(batch.ascend_cache.clone()) for _ in range(4)]
    outputs = [to_npu(torch.full_like(batch.query, SENTINEL)) for _ in layers]
    with counting_host_reads() as reads:
        metadata = builder.build(0, common)
        assert reads.total == 0, f"the metadata builder read the device: {reads}"
        for kv_cache, output in zip(layers, outputs, strict=True):
            impl.do_kv_cache_update(None, key, value, kv_cache, metadata.slot_mapping)
            impl.forward(None, query, key, value, kv_cache, metadata, output=output)
    assert reads.total == 0, f"attention layers read the device: {reads}"
    for output in outputs:
        torch.testing.assert_close(output.float(), expected.float(), atol=1.6e-2, rtol=1.6e-2)


def test_the_read_counter_sees_a_device_read(torch_npu: ModuleType) -> None:
    """The counter behind the zero above: reading the device seq_lens as the kernels
    once did is counted."""
    from torch_npu._device import counting_host_reads, to_npu

    seq_lens = to_npu(torch.tensor([3, 5], dtype=torch.int32))
    with counting_host_reads() as reads:
        seq_lens[:1].tolist()
        seq_lens.to(device="cpu", dtype=torch.int32)
        (seq_lens >= 0).all().item()
    assert dict(reads.by_kind) == {"tolist": 1, "to": 1, "item": 1}


@pytest.mark.parametrize(
    ("shape", "named"),
    [
        (dict(head_size=512, num_heads=8, num_kv_heads=8), "head_size 512 (_npu_paged_attention"),
        (dict(head_size=72, num_heads=8, num_kv_heads=8), "needs a multiple of 16"),
        (dict(head_size=64, num_heads=128, num_kv_heads=1), "a ratio of 128"),
        (dict(head_size=128, num_heads=1024, num_kv_heads=1024), "at most 65535"),
    ],
    ids=["head-size-512", "head-dim-72", "head-ratio-128", "kv-hidden"],
)
def test_ascend_kernels_name_the_shape_limits(shape: dict[str, int], named: str) -> None:
    none = dict(sliding_window=None, logits_soft_cap=None)
    features = ASCEND.unsupported(**none, **shape)
    assert len(features) == 1 and named in features[0]
    assert REFERENCE.unsupported(**none, **shape) == []
    assert ASCEND.unsupported(**none, head_size=256, num_heads=64, num_kv_heads=1) == []


def test_backend_refuses_the_model_shape_before_any_layer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hook the platform calls in check_and_update_config (start-up)."""

    class Model:
        hf_text_config = SimpleNamespace()

        def get_head_size(self) -> int:
            return 512

        def get_sliding_window(self) -> int | None:
            return None

        def get_num_attention_heads(self, parallel: object) -> int:
            return 8

        def get_num_kv_heads(self, parallel: object) -> int:
            return 8

    config = SimpleNamespace(model_config=Model(), parallel_config=None)
    use_device_backend(monkeypatch, kernel_set="ascend")
    assert NPUAttentionBackend.unsupported_model_features(config) == [
        "head_size 512 (_npu_paged_attention takes at most 256)"
    ]
    use_device_backend(monkeypatch, kernel_set="reference")
    assert NPUAttentionBackend.unsupported_model_features(config) == []
    use_device_backend(monkeypatch, kernel_set="ascend")
    with pytest.raises(NotImplementedError, match="head_size 512"):
        NPUAttentionImpl(
            num_heads=8,
            head_size=512,
            scale=1.0,
            num_kv_heads=8,
            alibi_slopes=None,
            sliding_window=None,
            kv_cache_dtype="auto",
        )
