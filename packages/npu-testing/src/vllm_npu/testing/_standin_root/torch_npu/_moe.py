"""Stand-in MoE ops: gating top-k (softmax, and DeepSeek's grouped form), token
routing by expert, grouped matmul and the weighted finalize.

Each op keeps torch_npu's schema (names, order, keyword-only markers, defaults, as
``libtorch_npu.so`` registers them), computes Ascend's documented result on the CPU
(float32 inside, the documented output dtypes outside) and rejects what the real op
rejects per its meta kernel and documentation. Modes the real op has but these do
not model (quantization, hash routing, drop-pad, ``finished`` rows) raise
``NotImplementedError`` rather than compute something unchecked. Among equal scores
the lower expert id is chosen.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "npu_grouped_matmul",
    "npu_moe_finalize_routing",
    "npu_moe_gating_top_k",
    "npu_moe_gating_top_k_softmax",
    "npu_moe_init_routing_v2",
]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_MAX_SOFTMAX_K = 1024
_MAX_GATING_EXPERTS = 2048
_GROUP_ALIGN = 32
_MAX_ROUTING_EXPERTS = 10240
_INNER_LIMIT = 65536


def _fail(op: str, message: str) -> RuntimeError:
    return RuntimeError(f"{op}: {message}")


def _check_float(op: str, name: str, tensor: Tensor) -> None:
    if tensor.dtype not in _FLOAT_DTYPES:
        raise _fail(op, f"{name} has dtype {tensor.dtype}; expected float16, bfloat16 or float32")


def _check_dims(op: str, name: str, tensor: Tensor, *dims: int) -> None:
    if tensor.dim() not in dims:
        raise _fail(
            op,
            f"{name} must have {' or '.join(map(str, dims))} dims, got shape {tuple(tensor.shape)}",
        )


def _top_indices(scores: Tensor, k: int) -> Tensor:
    return scores.sort(dim=-1, descending=True, stable=True).indices[..., :k]


def npu_moe_gating_top_k_softmax(
    x: Tensor, finished: Tensor | None = None, k: int = 1
) -> tuple[Tensor, Tensor, Tensor]:
    """(y, expert_idx, row_idx): the k largest of softmax(x) over the last dim, in x's
    dtype; their expert ids (int32); ``row_idx[..., i, j] = j * rows + i`` (int32)."""
    op = "npu_moe_gating_top_k_softmax"
    _check_float(op, "x", x)
    _check_dims(op, "x", x, 2, 3)
    if not 0 < k <= x.shape[-1] or k > _MAX_SOFTMAX_K:
        raise _fail(op, f"k must be in (0, {x.shape[-1]}] and at most {_MAX_SOFTMAX_K}, got {k}")
    if finished is not None:
        raise NotImplementedError(f"{op}: the stand-in does not model `finished`")
    scores = x.float().softmax(dim=-1)
    ids = _top_indices(scores, k)
    y = scores.gather(-1, ids).to(x.dtype)
    rows = x[..., 0].numel()
    row_idx = torch.arange(rows * k, dtype=torch.int32).view(k, rows).t().reshape(ids.shape)
    return y, ids.to(torch.int32), row_idx


def npu_moe_gating_top_k(
    x: Tensor,
    k: int,
    *,
    bias: Tensor | None = None,
    input_ids: Tensor | None = None,
    tid2eid: Tensor | None = None,
    k_group: int = 1,
    group_count: int = 1,
    group_select_mode: int = 0,
    renorm: int = 0,
    norm_type: int = 0,
    out_flag: bool = False,
    routed_scaling_factor: float = 1.0,
    eps: float = 1e-20,
) -> tuple[Tensor, Tensor, Tensor]:
    """(y, expert_idx, norm_out) of MoeGatingTopK.

    ``norm_out = softmax(x)`` (norm_type 0) or ``sigmoid(x)`` (1), float32. Experts
    compete on ``norm_out + bias`` within the ``k_group`` best of ``group_count``
    groups, a group scoring its best expert (group_select_mode 0) or its best two
    summed (1). ``y`` is ``norm_out`` of the k chosen experts in x's dtype; with
    sigmoid it is divided by its sum plus ``eps``; then multiplied by
    ``routed_scaling_factor``.
    """
    op = "npu_moe_gating_top_k"
    _check_float(op, "x", x)
    _check_dims(op, "x", x, 2)
    num_experts = x.shape[1]
    if num_experts > _MAX_GATING_EXPERTS:
        raise _fail(op, f"at most {_MAX_GATING_EXPERTS} experts, got {num_experts}")
    if bias is not None:
        _check_dims(op, "bias", bias, 1)
        if bias.shape[0] != num_experts or bias.dtype != x.dtype:
            raise _fail(
                op,
                f"bias must be [{num_experts}] in {x.dtype}, got {tuple(bias.shape)} {bias.dtype}",
            )
    if (input_ids is None) != (tid2eid is None):
        raise _fail(op, "input_ids and tid2eid must be both provided or both omitted")
    if input_ids is not None:
        raise NotImplementedError(f"{op}: the stand-in does not model hash routing")
    if group_count <= 0 or num_experts % group_count:
        raise _fail(op, f"{num_experts} experts cannot be split into {group_count} groups")
    per_group = num_experts // group_count
    aligned = -(-per_group // _GROUP_ALIGN) * _GROUP_ALIGN
    if per_group <= 2 or aligned * group_count > _MAX_GATING_EXPERTS:
        raise _fail(
            op,
            f"groups of {per_group} experts: need more than 2, and {aligned} (aligned to "
            f"{_GROUP_ALIGN}) * {group_count} <= {_MAX_GATING_EXPERTS}",
        )
    if not 1 <= k_group <= group_count or not 1 <= k <= per_group * k_group:
        raise _fail(
            op,
            f"need 1 <= k_group <= group_count and 1 <= k <= experts per group "
            f"* k_group, got k={k}, k_group={k_group}, group_count={group_count}",
        )
    if group_select_mode not in (0, 1):
        raise _fail(op, f"group_select_mode must be 0 or 1, got {group_select_mode}")
    if renorm != 0:
        raise _fail(op, f"only renorm=0 is supported, got {renorm}")
    if norm_type not in (0, 1):
        raise _fail(op, f"norm_type must be 0 (softmax) or 1 (sigmoid), got {norm_type}")
    logits = x.float()
    norm = logits.softmax(dim=-1) if norm_type == 0 else logits.sigmoid()
    choice = norm if bias is None else norm + bias.float()
    grouped = choice.view(-1, group_count, per_group)
    if group_select_mode == 0:
        group_scores = grouped.amax(dim=-1)
    else:
        group_scores = grouped.topk(2, dim=-1).values.sum(dim=-1)
    keep = torch.zeros_like(group_scores, dtype=torch.bool)
    keep.scatter_(1, _top_indices(group_scores, k_group), True)
    choice = grouped.masked_fill(~keep.unsqueeze(-1), float("-inf")).view_as(choice)
    ids = _top_indices(choice, k)
    y = norm.gather(1, ids)
    if norm_type == 1:
        y = y / (y.sum(dim=-1, keepdim=True) + eps)
    y = y * routed_scaling_factor
    return y.to(x.dtype), ids.to(torch.int32), norm


def npu_moe_init_routing_v2(
    x: Tensor,
    expert_idx: Tensor,
    *,
    scale: Tensor | None = None,
    offset: Tensor | None = None,
    active_num: int = -1,
    expert_capacity: int = -1,
    expert_num: int = -1,
    drop_pad_mode: int = 0,
    expert_tokens_num_type: int = 0,
    expert_tokens_num_flag: bool = False,
    quant_mode: int = -1,
    active_expert_range: list[int] | tuple[int, ...] = (),  # the real default: []
    row_idx_type: int = 0,
    x_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(expanded_x, expanded_row_idx, expert_tokens, expanded_scale), dropless, unquantized.

    The ``rows * k`` copies (copy ``t * k + j`` is token t for its j-th expert) are
    sorted by expert id, stably; copies whose expert is outside
    ``active_expert_range`` ``[start, end)`` are dropped. ``expanded_x`` holds the
    kept copies' rows in that order (rows past them are zero); ``expanded_row_idx``
    maps a copy to its row there, -1 if dropped (row_idx_type 0), or a row to its
    copy (1, rows past the kept ones -1); ``expert_tokens`` counts the copies of
    each active expert (int64). ``expanded_scale`` is undefined without ``scale``.
    """
    op = "npu_moe_init_routing_v2"
    _check_float(op, "x", x)
    _check_dims(op, "x", x, 2)
    _check_dims(op, "expert_idx", expert_idx, 2)
    if expert_idx.dtype != torch.int32:
        raise _fail(op, f"expert_idx must be int32, got {expert_idx.dtype}")
    if x.shape[0] != expert_idx.shape[0]:
        raise _fail(op, "the first dim of expert_idx and x should be the same")
    if scale is not None or offset is not None or quant_mode != -1 or x_dtype is not None:
        raise NotImplementedError(f"{op}: the stand-in models the unquantized mode only")
    if drop_pad_mode != 0:
        raise _fail(op, f"only drop_pad_mode=0 (dropless) is supported, got {drop_pad_mode}")
    if expert_tokens_num_type not in (1, 2) or not expert_tokens_num_flag:
        raise _fail(
            op,
            "only expert_tokens_num_type 1 or 2 with expert_tokens_num_flag=True "
            f"are supported, got {expert_tokens_num_type}, {expert_tokens_num_flag}",
        )
    if expert_tokens_num_type == 2:
        raise NotImplementedError(f"{op}: the stand-in does not model key_value counts")
    if not 0 < expert_num <= _MAX_ROUTING_EXPERTS:
        raise _fail(op, f"expert_num must be in (0, {_MAX_ROUTING_EXPERTS}], got {expert_num}")
    if row_idx_type not in (0, 1):
        raise _fail(op, f"row_idx_type must be 0 or 1, got {row_idx_type}")
    if active_num < -1:
        raise _fail(op, f"active_num must be >= -1, got {active_num}")
    start, end = active_expert_range if active_expert_range else (0, expert_num)
    if not (0 <= start < end <= expert_num):
        raise _fail(
            op,
            f"active_expert_range must be increasing within [0, {expert_num}], "
            f"got {active_expert_range}",
        )
    ids = expert_idx.flatten().long()
    if ids.numel() and (ids.min() < 0 or ids.max() >= expert_num):
        raise _fail(op, f"expert ids must be in [0, {expert_num})")
    num_copies = ids.numel()
    num_rows = num_copies if active_num <= 0 else min(active_num, num_copies)
    order = ids.sort(stable=True).indices
    active = (ids[order] >= start) & (ids[order] < end)
    kept = order[active][:num_rows]
    expanded_x = x.new_zeros((num_rows, x.shape[1]))
    expanded_x[: kept.numel()] = x[kept // expert_idx.shape[1]]
    if row_idx_type == 0:
        expanded_row_idx = torch.full((num_copies,), -1, dtype=torch.int32)
        expanded_row_idx[kept] = torch.arange(kept.numel(), dtype=torch.int32)
    else:
        expanded_row_idx = torch.full((num_copies,), -1, dtype=torch.int32)
        expanded_row_idx[: kept.numel()] = kept.to(torch.int32)
    expert_tokens = torch.bincount(ids[kept] - start, minlength=end - start).to(torch.int64)
    expanded_scale = torch.zeros(num_rows, dtype=torch.float32)
    return expanded_x, expanded_row_idx, expert_tokens, expanded_scale


def npu_grouped_matmul(
    x: list[Tensor],
    weight: list[Tensor],
    *,
    bias: list[Tensor] | None = None,
    scale: list[Tensor] | None = None,
    offset: list[Tensor] | None = None,
    antiquant_scale: list[Tensor] | None = None,
    antiquant_offset: list[Tensor] | None = None,
    per_token_scale: list[Tensor] | None = None,
    group_list: Tensor | None = None,
    activation_input: list[Tensor] | None = None,
    activation_quant_scale: list[Tensor] | None = None,
    activation_quant_offset: list[Tensor] | None = None,
    split_item: int | None = 0,
    group_type: int | None = None,
    group_list_type: int | None = 0,
    act_type: int | None = 0,
    tuning_config: list[int] | None = None,
    output_dtype: int | None = None,
    x_dtype: int | None = None,
    weight_dtype: int | None = None,
    scale_dtype: int | None = None,
    per_token_scale_dtype: int | None = None,
) -> list[Tensor]:
    """[y]: row group g of the single x times ``weight[0][g]`` (``[groups, k, n]``),
    for groups of rows given by ``group_list`` (counts for group_list_type 1, a
    cumsum for 0), unquantized, one output (split_item 2 or 3), groups along the
    rows (group_type 0). Rows past the last group are not computed: NaN here, as
    garbage on an NPU."""
    op = "npu_grouped_matmul"
    unmodelled = (
        bias,
        scale,
        offset,
        antiquant_scale,
        antiquant_offset,
        per_token_scale,
        activation_input,
        activation_quant_scale,
        activation_quant_offset,
        tuning_config,
        output_dtype,
        x_dtype,
        weight_dtype,
        scale_dtype,
        per_token_scale_dtype,
    )
    if any(arg is not None for arg in unmodelled) or act_type not in (0, None):
        raise NotImplementedError(f"{op}: the stand-in models the unquantized form only")
    if group_type not in (-1, 0, 2):
        raise _fail(op, f"group_type only supports -1, 0 and 2, but got {group_type}")
    if len(x) != 1 or len(weight) != 1 or weight[0].dim() != 3 or group_type != 0:
        raise NotImplementedError(
            f"{op}: the stand-in models one x, one [groups, k, n] weight, group_type 0"
        )
    if split_item not in (2, 3):
        raise _fail(op, f"a single x and weight need split_item 2 or 3, got {split_item}")
    (a,), (b,) = x, weight
    _check_float(op, "x", a)
    _check_dims(op, "x", a, 2)
    if b.dtype != a.dtype:
        raise _fail(op, f"weight dtype {b.dtype} differs from x dtype {a.dtype}")
    if a.shape[1] != b.shape[1]:
        raise _fail(op, f"x {tuple(a.shape)} and weight {tuple(b.shape)} disagree on k")
    if a.shape[1] >= _INNER_LIMIT or b.shape[2] >= _INNER_LIMIT:
        raise _fail(op, f"inner dims must be below {_INNER_LIMIT}")
    if not isinstance(group_list, Tensor) or group_list.dtype != torch.int64:
        raise _fail(op, "group_list must be an int64 tensor")
    if group_list.dim() != 1 or group_list.shape[0] != b.shape[0]:
        raise _fail(
            op,
            f"group_list must hold one entry per weight group ({b.shape[0]}), "
            f"got shape {tuple(group_list.shape)}",
        )
    entries = group_list.tolist()
    if group_list_type == 1:
        if any(count < 0 for count in entries) or len(entries) == 1:
            raise _fail(
                op, "with group_list_type 1 group_list must be non-negative counts, more than one"
            )
        counts = entries
    elif group_list_type == 0:
        steps = zip(entries, entries[1:], strict=False)
        if any(e < 0 for e in entries) or any(q < p for p, q in steps):
            raise _fail(op, "with group_list_type 0 group_list must be non-decreasing")
        counts = [q - p for p, q in zip([0, *entries], entries, strict=False)]
    else:
        raise _fail(op, f"group_list_type must be 0 or 1, got {group_list_type}")
    if sum(counts) > a.shape[0]:
        raise _fail(op, f"the groups hold {sum(counts)} rows but x has {a.shape[0]}")
    y = torch.full((a.shape[0], b.shape[2]), float("nan"), dtype=torch.float32)
    start = 0
    for group, count in enumerate(counts):
        if count:
            y[start : start + count] = a[start : start + count].float() @ b[group].float()
            start += count
    return [y.to(a.dtype)]


def npu_moe_finalize_routing(
    expanded_permuted_rows: Tensor,
    skip1: Tensor | None,
    skip2: Tensor | None,
    bias: Tensor | None,
    scales: Tensor | None,
    expanded_src_to_dst_row: Tensor,
    export_for_source_row: Tensor | None,
    drop_pad_mode: int | None = 0,
    k: int | None = 1,
) -> Tensor:
    """out[i] = skip1[i] + skip2[i] + sum_j scales[i, j] * (rows[src_to_dst[i + j * n]]
    + bias[export_for_source_row[i, j]]) for the n = len(src_to_dst) / k tokens,
    in the rows' dtype (dropless mode)."""
    op = "npu_moe_finalize_routing"
    rows = expanded_permuted_rows
    _check_float(op, "expanded_permuted_rows", rows)
    _check_dims(op, "expanded_permuted_rows", rows, 2)
    if drop_pad_mode != 0:
        raise _fail(op, f"only drop_pad_mode=0 is supported, got {drop_pad_mode}")
    index = expanded_src_to_dst_row
    _check_dims(op, "expanded_src_to_dst_row", index, 1)
    if index.dtype != torch.int32:
        raise _fail(op, f"expanded_src_to_dst_row must be int32, got {index.dtype}")
    top_k = scales.shape[1] if scales is not None else k
    if not top_k or top_k < 1 or index.shape[0] % top_k:
        raise _fail(op, f"expanded_src_to_dst_row of {index.shape[0]} rows for k={top_k}")
    num_tokens = index.shape[0] // top_k
    if index.numel() and (index.min() < 0 or index.max() >= rows.shape[0]):
        raise _fail(op, f"expanded_src_to_dst_row values must be in [0, {rows.shape[0] - 1}]")
    out_shape = (num_tokens, rows.shape[1])
    if skip2 is None and skip1 is not None:
        raise _fail(op, "skip1 must be None when skip2 is None")
    for name, skip in (("skip1", skip1), ("skip2", skip2)):
        if skip is not None and (skip.dtype != rows.dtype or tuple(skip.shape) != out_shape):
            raise _fail(op, f"{name} must be {out_shape} in {rows.dtype}")
    scales_shape = (num_tokens, top_k)
    if scales is not None and (scales.dtype != rows.dtype or tuple(scales.shape) != scales_shape):
        raise _fail(
            op,
            f"scales must be ({num_tokens}, {top_k}) in {rows.dtype}, got "
            f"{tuple(scales.shape)} {scales.dtype}",
        )
    gathered = rows.float()[index.long()].view(top_k, num_tokens, -1)
    if bias is not None:
        if export_for_source_row is None or bias.dtype != rows.dtype or bias.dim() != 2:
            raise _fail(
                op, "bias must be (experts, hidden) in the rows' dtype, with export_for_source_row"
            )
        experts = export_for_source_row.long().t()
        gathered = gathered + bias.float()[experts]
    weight = torch.ones(num_tokens, top_k) if scales is None else scales.float()
    out = (gathered * weight.t().unsqueeze(-1)).sum(dim=0)
    for skip in (skip1, skip2):
        if skip is not None:
            out = out + skip.float()
    return out.to(rows.dtype)
