"""The reference attention kernels against a naive per-request full attention."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from vllm_npu.attention import kernels
from vllm_npu.attention.kernels import HostLengths, _reference, _reference_decode
from vllm_npu.attention.kernels._reference import paged_attention, write_kv_cache
from vllm_npu.platform.kernel_sets import KernelSets

SENTINEL = 7.0
TOLERANCES = {torch.float32: 2e-5, torch.bfloat16: 2e-2}


@dataclass(frozen=True)
class Req:
    seq_len: int
    query_len: int
    # Share the first ``shared_blocks`` blocks (and their tokens) of an earlier request.
    prefix_of: int | None = None
    shared_blocks: int = 0


@dataclass
class Batch:
    reqs: list[Req]
    contexts: list[tuple[Tensor, Tensor]]  # per request: K, V [seq_len, kv_heads, d]
    query: Tensor  # [num_tokens + padding rows, heads, d]
    key: Tensor
    value: Tensor
    slot_mapping: Tensor  # longer than query; -1 on padding rows
    kv_cache: Tensor
    flat_buffer: Tensor  # the storage kv_cache is a view of
    block_table: Tensor
    query_start_loc: Tensor
    seq_lens: Tensor
    num_tokens: int


def make_kv_cache(
    shape: tuple[int, int, int, int], dtype: torch.dtype, layout: str
) -> tuple[Tensor, Tensor]:
    """A NaN-filled cache view (so reads of unwritten slots show) and its buffer."""
    num_blocks, kv_heads, block_size, dim = shape
    if layout == "contiguous":
        flat = torch.full((math.prod(shape),), math.nan, dtype=dtype)
        return flat.view(shape), flat
    if layout == "token_major":  # vLLM's own: [blocks, block_size, kv_heads, dim] in memory
        flat = torch.full((math.prod(shape),), math.nan, dtype=dtype)
        return flat.view(num_blocks, block_size, kv_heads, dim).permute(0, 2, 1, 3), flat
    # Like vLLM's flat buffer: two caches interleaved, token-major; take the second.
    flat = torch.full((2 * math.prod(shape),), math.nan, dtype=dtype)
    physical = flat.view(num_blocks, 2, block_size, kv_heads, dim)
    return physical[:, 1].permute(0, 2, 1, 3), flat


def make_batch(
    reqs: list[Req],
    *,
    heads: int = 4,
    kv_heads: int = 2,
    head_size: int = 16,
    block_size: int = 8,
    dtype: torch.dtype = torch.float32,
    layout: str = "contiguous",
    block_order: str = "shuffled",
    unused_entries: str = "spare",
    index_dtype: torch.dtype = torch.int32,
    padding_rows: int = 3,
) -> Batch:
    """Requests with their earlier tokens already cached and their new tokens
    (plus ``padding_rows`` padding tokens) ready to be written and attended."""
    gen = torch.Generator().manual_seed(1234)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen).to(dtype)

    blocks_needed = [-(-r.seq_len // block_size) for r in reqs]
    num_blocks = sum(blocks_needed) + 2
    pool = (
        torch.randperm(num_blocks, generator=gen)
        if block_order == "shuffled"
        else torch.arange(num_blocks)
    ).tolist()
    cache_shape = (num_blocks, kv_heads, block_size, 2 * head_size)
    kv_cache, flat = make_kv_cache(cache_shape, dtype, layout)
    block_lists: list[list[int]] = []
    contexts: list[tuple[Tensor, Tensor]] = []
    for r, needed in zip(reqs, blocks_needed, strict=True):
        k, v = (
            randn(r.seq_len, kv_heads, head_size),
            randn(r.seq_len, kv_heads, head_size),
        )
        blocks = [pool.pop() for _ in range(needed - r.shared_blocks)]
        if r.prefix_of is not None:
            shared = r.shared_blocks * block_size
            assert shared <= r.seq_len - r.query_len, "only the suffix is computed"
            k[:shared], v[:shared] = (t[:shared] for t in contexts[r.prefix_of])
            blocks = block_lists[r.prefix_of][: r.shared_blocks] + blocks
        block_lists.append(blocks)
        contexts.append((k, v))
        # Earlier steps' tokens, written directly (shared ones by their owner).
        for pos in range(r.shared_blocks * block_size, r.seq_len - r.query_len):
            block, offset = blocks[pos // block_size], pos % block_size
            kv_cache[block, :, offset] = torch.cat([k[pos], v[pos]], dim=-1)

    new_positions = [list(range(r.seq_len - r.query_len, r.seq_len)) for r in reqs]
    slots = [
        blocks[p // block_size] * block_size + p % block_size
        for blocks, positions in zip(block_lists, new_positions, strict=True)
        for p in positions
    ]
    num_tokens = len(slots)
    # Padding rows, then entries past the rows that name real slots and must be ignored.
    slot_mapping = slots + [-1] * padding_rows + [0, block_size + 1]
    new_kv = [(k[p], v[p]) for (k, v), p in zip(contexts, new_positions, strict=True)]
    padding = randn(padding_rows, kv_heads, head_size)
    width = max(blocks_needed) + 1
    # Unused block-table entries: a never-written (NaN) block, or no block at all.
    unused = pool[0] if unused_entries == "spare" else num_blocks + 100
    table = [blocks + [unused] * (width - len(blocks)) for blocks in block_lists]
    query_start_loc = [0, *itertools.accumulate(r.query_len for r in reqs)]
    return Batch(
        reqs=reqs,
        contexts=contexts,
        query=randn(num_tokens + padding_rows, heads, head_size),
        key=torch.cat([k for k, _ in new_kv] + [padding]),
        value=torch.cat([v for _, v in new_kv] + [padding]),
        slot_mapping=torch.tensor(slot_mapping, dtype=index_dtype),
        kv_cache=kv_cache,
        flat_buffer=flat,
        block_table=torch.tensor(table, dtype=index_dtype),
        query_start_loc=torch.tensor(query_start_loc, dtype=index_dtype),
        seq_lens=torch.tensor([r.seq_len for r in reqs], dtype=index_dtype),
        num_tokens=num_tokens,
    )


def naive_attention(
    batch: Batch,
    scale: float,
    sliding_window: int | None = None,
    logits_soft_cap: float | None = None,
) -> Tensor:
    """Full attention per request and head over its materialized context."""
    heads, kv_heads = batch.query.shape[1], batch.contexts[0][0].shape[1]
    rows = []
    start = 0
    for r, (k, v) in zip(batch.reqs, batch.contexts, strict=True):
        q = batch.query[start : start + r.query_len].float()
        start += r.query_len
        q_pos = torch.arange(r.seq_len - r.query_len, r.seq_len)[:, None]
        k_pos = torch.arange(r.seq_len)[None, :]
        allowed = k_pos <= q_pos
        if sliding_window is not None:
            allowed &= k_pos > q_pos - sliding_window
        out = torch.empty(r.query_len, heads, v.shape[-1])
        for h in range(heads):
            kv_head = h // (heads // kv_heads)
            scores = q[:, h] @ k[:, kv_head].float().T * scale
            if logits_soft_cap is not None:
                scores = logits_soft_cap * torch.tanh(scores / logits_soft_cap)
            scores = scores.masked_fill(~allowed, -math.inf)
            out[:, h] = torch.softmax(scores, dim=-1) @ v[:, kv_head].float()
        rows.append(out)
    return torch.cat(rows)


def check(
    batch: Batch, scale: float = 0.25, pass_maxima: bool = True, **options
) -> Tensor:
    """Write the batch's new tokens, attend, and compare with the naive attention:
    once as given and, unless ``host_lengths`` is given, once more with the batch's
    lengths on the host (which the decode path groups requests by)."""
    write_kv_cache(batch.key, batch.value, batch.kv_cache, batch.slot_mapping)
    if pass_maxima:
        options["max_query_len"] = max(r.query_len for r in batch.reqs)
        options["max_seq_len"] = max(r.seq_len for r in batch.reqs)
    expected = naive_attention(
        batch,
        scale,
        options.get("sliding_window"),
        options.get("logits_soft_cap"),
    )
    variants = [options]
    if "host_lengths" not in options:
        lengths = HostLengths.from_host(batch.query_start_loc, batch.seq_lens)
        variants.append({**options, "host_lengths": lengths})
    for variant in variants:
        output = torch.full(batch.query.shape, SENTINEL, dtype=batch.query.dtype)
        result = paged_attention(
            batch.query,
            batch.kv_cache,
            batch.block_table,
            batch.query_start_loc,
            batch.seq_lens,
            scale=scale,
            output=output,
            **variant,
        )
        assert result is output
        assert (output[batch.num_tokens :] == SENTINEL).all(), "padding rows were written"
        actual = output[: batch.num_tokens].float()
        # Not torch.testing.assert_close: its first use costs seconds of imports.
        max_error = (actual - expected).abs().nan_to_num(math.inf).max().item()
        tol = TOLERANCES[batch.query.dtype]
        assert torch.allclose(actual, expected, atol=tol, rtol=tol), f"error {max_error}"
    return actual


SCENARIOS = {
    "prefill": [Req(5, 5), Req(17, 17), Req(1, 1), Req(32, 32)],
    "decode": [Req(1, 1), Req(9, 1), Req(16, 1), Req(33, 1), Req(70, 1)],
    "chunked_prefill": [Req(40, 13), Req(25, 8)],
    "mixed": [Req(20, 20), Req(37, 1), Req(10, 0), Req(50, 6), Req(3, 1)],
}
DTYPES = [torch.float32, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_matches_naive_attention(scenario: str, dtype: torch.dtype) -> None:
    check(make_batch(SCENARIOS[scenario], dtype=dtype))


@pytest.mark.parametrize("scenario", ["decode", "mixed"])
@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 4), (8, 2), (8, 1)])
def test_grouped_and_multi_query_heads(heads: int, kv_heads: int, scenario: str) -> None:
    check(make_batch(SCENARIOS[scenario], heads=heads, kv_heads=kv_heads))


@pytest.mark.parametrize("window", [1, 7])
@pytest.mark.parametrize("scenario", ["decode", "prefill", "mixed"])
def test_sliding_window(scenario: str, window: int) -> None:
    check(make_batch(SCENARIOS[scenario]), sliding_window=window)


@pytest.mark.parametrize("scenario", ["decode", "mixed"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_logits_soft_cap(dtype: torch.dtype, scenario: str) -> None:
    batch = make_batch(SCENARIOS[scenario], dtype=dtype)
    capped = check(batch, scale=1.0, logits_soft_cap=1.5)
    uncapped = naive_attention(batch, scale=1.0)
    assert not torch.allclose(capped, uncapped, atol=0.1), "the cap should matter"


def test_prefix_reuse_reads_shared_blocks() -> None:
    reqs = [Req(20, 1), Req(29, 13, prefix_of=0, shared_blocks=2)]
    batch = make_batch(reqs, block_size=8)
    assert batch.block_table[0, :2].tolist() == batch.block_table[1, :2].tolist()
    check(batch)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("scenario", ["decode", "mixed"])
@pytest.mark.parametrize("sliding_window", [None, 7])
@pytest.mark.parametrize(
    ("layout", "by_slot"),
    # vLLM's own layout of our cache, whose slots are rows of one view; and token-major
    # with two caches interleaved in one buffer, whose blocks and offsets do not merge.
    [("token_major", True), ("strided", False)],
)
def test_non_contiguous_kv_cache_view(
    dtype: torch.dtype, scenario: str, sliding_window: int | None, layout: str, by_slot: bool
) -> None:
    batch = make_batch(SCENARIOS[scenario], dtype=dtype, layout=layout)
    assert not batch.kv_cache.is_contiguous()
    assert (_reference_decode.slot_view(batch.kv_cache) is not None) == by_slot
    check(batch, sliding_window=sliding_window)
    check(batch, logits_soft_cap=1.5, sliding_window=sliding_window)
    if layout == "strided":
        other_cache = batch.flat_buffer.view(batch.kv_cache.shape[0], 2, -1)[:, 0]
        assert other_cache.isnan().all(), "wrote outside the cache view"


@pytest.mark.parametrize("unused_entries", ["spare", "out_of_range"])
@pytest.mark.parametrize("block_order", ["sequential", "shuffled"])
def test_block_table_contents(block_order: str, unused_entries: str) -> None:
    check(
        make_batch(
            SCENARIOS["mixed"], block_order=block_order, unused_entries=unused_entries
        )
    )


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64], ids=str)
@pytest.mark.parametrize("pass_maxima", [True, False])
def test_index_dtypes_and_maxima(index_dtype: torch.dtype, pass_maxima: bool) -> None:
    check(
        make_batch(SCENARIOS["mixed"], index_dtype=index_dtype), pass_maxima=pass_maxima
    )


@pytest.mark.parametrize("scenario", ["decode", "mixed"])
def test_requests_split_into_chunks_over_budget(
    monkeypatch: pytest.MonkeyPatch, scenario: str
) -> None:
    monkeypatch.setattr(_reference, "CHUNK_BUDGET_BYTES", 1)
    check(make_batch(SCENARIOS[scenario]), sliding_window=7)


def test_decode_batch_is_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    decode = _reference.decode

    def counting_decode(query, kv_cache, plan, **kwargs) -> None:
        calls.append(sum(group.num_reqs for group in plan.groups))
        decode(query, kv_cache, plan, **kwargs)

    monkeypatch.setattr(_reference, "decode", counting_decode)
    check(make_batch([Req(n % 40 + 1, 1) for n in range(64)]))
    assert calls == [64, 64]  # without and with host lengths


@pytest.mark.parametrize("layout", ["token_major", "strided"])
@pytest.mark.parametrize("options", [{}, {"sliding_window": 7}, {"logits_soft_cap": 1.5}])
def test_decode_groups_requests_by_context_length(
    monkeypatch: pytest.MonkeyPatch, layout: str, options: dict
) -> None:
    """With group overhead 0 each context length gets a group of its own (padded to
    nothing); results stay those of the naive attention, whatever the order of the
    requests in the batch."""
    monkeypatch.setattr(_reference_decode, "GROUP_OVERHEAD_ELEMENTS", 0)
    groups = []
    group = _reference_decode._Group
    monkeypatch.setattr(
        _reference_decode, "_Group", lambda **fields: groups.append(fields) or group(**fields)
    )
    lengths = [33, 1, 70, 9, 33, 16, 70, 2]
    batch = make_batch([Req(n, 1) for n in lengths], layout=layout)
    host_lengths = HostLengths.from_host(batch.query_start_loc, batch.seq_lens)
    check(batch, host_lengths=host_lengths, **options)
    window = options.get("sliding_window") or max(lengths)
    distinct = sorted({min(n, window) for n in lengths}, reverse=True)
    by_group = [
        [min(n, window) for n in lengths if min(n, window) == length] for length in distinct
    ]
    assert [fields["num_reqs"] for fields in groups] == [len(g) for g in by_group]


def test_group_split_spares_padding_worth_a_group() -> None:
    """The benchmark's mix of contexts (11 to 207 positions) is cut where the padding
    spared outweighs a group's overhead, never into more groups than lengths."""
    lengths = sorted(
        (n + 32 for n in [11, 18, 25, 24, 25, 44, 45, 67, 98, 174, 15, 54, 12, 19, 26, 25]
         * 2),
        reverse=True,
    )
    bounds = _reference_decode._split(lengths, 2 * 128, lambda length: 1000)
    padded = sum((end - start) * lengths[start] for start, end in bounds)
    assert 1 < len(bounds) < len(set(lengths))
    assert padded < 0.6 * len(lengths) * lengths[0]
    assert [start for start, _ in bounds[1:]] == [end for _, end in bounds[:-1]]
    assert _reference_decode._split(lengths, 2 * 128, lambda length: 3)[0] == (0, 2)
    assert _reference_decode._split([5, 5, 5], 1, lambda length: 1000) == [(0, 3)]


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64], ids=str)
def test_decode_plan_is_shared_by_the_layers_of_a_step(
    index_dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Layers given the step's HostLengths reuse its plan (the int32 index tensors
    vLLM passes are converted anew in each call); another step's is not used."""
    builds = []
    plan = _reference_decode._DecodePlan
    monkeypatch.setattr(
        _reference_decode, "_DecodePlan", lambda **fields: builds.append(1) or plan(**fields)
    )
    reqs = [Req(n % 40 + 1, 1) for n in range(8)]
    for step in range(2):
        batch = make_batch([Req(r.seq_len + step * 9, 1) for r in reqs], index_dtype=index_dtype)
        lengths = HostLengths.from_host(batch.query_start_loc, batch.seq_lens)
        for layer_scale in (0.25, 0.5):
            check(batch, scale=layer_scale, host_lengths=lengths)
            check(batch, scale=layer_scale, host_lengths=lengths, sliding_window=5)
    assert len(builds) == 4, "one plan per step and sliding window, not per layer"
    assert any(entry[0] is lengths for entry in _reference_decode._PLANS.values())


def test_mixed_batch_takes_the_padded_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(_reference, "decode", lambda *args, **kwargs: calls.append(1))
    check(make_batch(SCENARIOS["mixed"]))
    assert calls == []


def test_empty_batch_leaves_output() -> None:
    output = torch.full((2, 4, 16), SENTINEL)
    paged_attention(
        torch.zeros(2, 4, 16),
        torch.zeros(3, 2, 8, 32),
        torch.zeros(0, 4, dtype=torch.int32),
        torch.zeros(1, dtype=torch.int32),
        torch.zeros(0, dtype=torch.int32),
        scale=1.0,
        output=output,
    )
    assert (output == SENTINEL).all()


@pytest.mark.parametrize("layout", ["contiguous", "strided", "token_major"])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64], ids=str)
@pytest.mark.parametrize("src_dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cache_dtype", DTYPES, ids=str)
def test_write_kv_cache(
    layout: str,
    index_dtype: torch.dtype,
    src_dtype: torch.dtype,
    cache_dtype: torch.dtype,
) -> None:
    block_size, head_size = 4, 8
    shape = (5, 2, block_size, 2 * head_size)
    kv_cache, flat = make_kv_cache(shape, cache_dtype, layout)
    gen = torch.Generator().manual_seed(0)
    key, value = torch.randn(2, 6, 2, head_size, generator=gen).to(src_dtype)
    # Two padding tokens, then trailing entries that are not tokens at all.
    slots = [13, -1, 0, 19, -1, 6, 1, 2]
    write_kv_cache(key, value, kv_cache, torch.tensor(slots, dtype=index_dtype))

    expected = torch.full(shape, math.nan, dtype=cache_dtype)
    for token, slot in enumerate(slots[:6]):
        if slot >= 0:
            token_kv = torch.cat([key[token], value[token]], dim=-1)
            expected[slot // block_size, :, slot % block_size] = token_kv
    assert torch.equal(kv_cache.isnan(), expected.isnan())
    assert torch.equal(kv_cache.nan_to_num(), expected.nan_to_num())
    assert flat.isnan().sum() == flat.numel() - 4 * 2 * 2 * head_size


def test_write_kv_cache_rejects_short_slot_mapping() -> None:
    kv_cache = torch.zeros(2, 1, 4, 8)
    with pytest.raises(ValueError, match="2 entries for 3 tokens"):
        write_kv_cache(
            torch.ones(3, 1, 4), torch.ones(3, 1, 4), kv_cache, torch.tensor([0, 1])
        )


def test_reference_set_is_registered() -> None:
    reference = kernels.get_kernels("reference")
    assert "reference" in kernels.available_kernels()
    assert isinstance(reference, kernels.AttentionKernels)
    assert reference.name == "reference"
    assert reference.paged_attention is paged_attention


def test_unknown_kernel_set_names_registered_sets() -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown attention kernel set 'nope'; "
        r"registered: .*reference",
    ):
        kernels.get_kernels("nope")


def test_register_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    empty = KernelSets("attention", kernels.AttentionKernels, "AttentionKernels")
    monkeypatch.setattr(kernels, "_KERNEL_SETS", empty)

    class Custom(_reference.ReferenceKernels):
        name = "custom"

    custom = Custom()
    kernels.register_kernels("custom", custom)
    kernels.register_kernels("custom", custom)
    assert kernels.get_kernels("custom") is custom
    assert kernels.available_kernels() == ("custom",)
    with pytest.raises(ValueError, match="already registered"):
        kernels.register_kernels("custom", Custom())
    with pytest.raises(TypeError, match="not an attention kernel set"):
        kernels.register_kernels("broken", object())  # type: ignore[arg-type]
