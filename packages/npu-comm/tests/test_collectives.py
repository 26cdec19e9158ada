"""Every collective of ``NPUCommunicator`` in 2 gloo processes, against the same
operation done by hand on the full tensors.

All cases run in one launch of the two processes (starting them costs far more
than the collectives); each case is then checked as its own test.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.multiprocessing

from vllm_npu.platform._host import HostBackend

WORLD_SIZE = 2
LAUNCH_TIMEOUT_S = 300
"""Generous: each process imports torch and vLLM, slow on a busy 2-core machine."""

TESTS_DIR = Path(__file__).parent


@dataclass(frozen=True)
class Case:
    op: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    dim: int = -1
    root: int = 0
    error: str | None = None
    """Part of the one-line error expected instead of a result."""

    def __str__(self) -> str:
        parts = [self.op, "x".join(map(str, self.shape))]
        if self.op in ("all_gather", "reduce_scatter", "gather"):
            parts.append(f"dim{self.dim}")
        if self.op in ("gather", "broadcast"):
            parts.append(f"root{self.root}")
        return "-".join([*parts, str(self.dtype).removeprefix("torch.")])

    def inputs(self, seed: int) -> list[torch.Tensor]:
        """One tensor per rank. Small integers, so every sum is exact in bfloat16."""
        generator = torch.Generator().manual_seed(seed)
        return [
            torch.randint(-8, 9, self.shape, generator=generator).to(self.dtype)
            for _ in range(WORLD_SIZE)
        ]


SHAPES = [(5,), (3, 4), (2, 3, 4)]


def _cases() -> list[Case]:
    cases = []
    for dtype in (torch.float32, torch.bfloat16):
        cases += [Case("all_reduce", shape, dtype) for shape in SHAPES]
        cases += [Case("all_gather", (3, 4), dtype, dim) for dim in (0, -1)]
        cases += [Case("all_gather", (2, 3, 4), dtype, dim) for dim in (0, 1, 2)]
        cases += [Case("reduce_scatter", (4, 6), dtype, dim) for dim in (0, -1)]
        cases += [Case("reduce_scatter", (2, 4, 6), dtype, d) for d in (0, 1, 2, -2)]
        cases += [
            Case("gather", (3, 4), dtype, dim=-1, root=0),
            Case("gather", (2, 3, 4), dtype, dim=1, root=1),
            Case("gather", (2, 3, 4), dtype, dim=0, root=0),
            Case("broadcast", (3, 4), dtype, root=0),
            Case("broadcast", (2, 3, 4), dtype, root=1),
            Case("send_recv", (3, 4), dtype),
            Case("send_recv_default_peers", (2, 3, 4), dtype),
        ]
    cases += [
        Case("all_gatherv", (3, 4), torch.float32),
        Case("reduce_scatterv", (5, 4), torch.float32),
        Case("reduce_scatter", (3, 4), torch.float32, 0, error="does not divide by"),
        Case("reduce_scatter", (4, 4), torch.float32, 2, error="out of range"),
    ]
    return cases


CASES = _cases()


def _expected(
    case: Case, inputs: list[torch.Tensor], rank: int
) -> torch.Tensor | list[torch.Tensor] | None:
    """What rank ``rank`` must get, computed on the full tensors of every rank."""
    total = torch.stack(inputs).sum(dim=0)
    concatenated = torch.cat(inputs, dim=case.dim)
    sizes = _rank_module().UNEVEN_SIZES
    uneven = torch.cat([tensor[:size] for tensor, size in zip(inputs, sizes, strict=True)])
    start = sum(sizes[:rank])
    by_op: dict[str, Callable[[], torch.Tensor | list[torch.Tensor] | None]] = {
        "all_reduce": lambda: total,
        "all_gather": lambda: concatenated,
        "reduce_scatter": lambda: total.chunk(WORLD_SIZE, dim=case.dim)[rank],
        "all_gatherv": lambda: [uneven, uneven * 2],
        "reduce_scatterv": lambda: total[start : start + sizes[rank]],
        "gather": lambda: concatenated if rank == case.root else None,
        "broadcast": lambda: inputs[case.root],
        "send_recv": lambda: inputs[(rank - 1) % WORLD_SIZE],
        "send_recv_default_peers": lambda: inputs[(rank - 1) % WORLD_SIZE],
    }
    return by_op[case.op]()


def _rank_module() -> ModuleType:
    return importlib.import_module("_collective_ranks")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[list[object]]:
    """What every rank got for every case, from one launch of the processes."""
    workdir = tmp_path_factory.mktemp("collectives")
    with pytest.MonkeyPatch.context() as patch:
        # Spawned processes inherit sys.path, so they import the rank module too.
        patch.syspath_prepend(str(TESTS_DIR))
        ranks = _rank_module()
        calls = [
            (case.op, case.dim, case.root, case.inputs(seed))
            for seed, case in enumerate(CASES)
        ]
        context = torch.multiprocessing.start_processes(
            ranks.run,
            args=(
                WORLD_SIZE,
                f"file://{workdir / 'store'}",
                HostBackend.dist_backend,
                calls,
                workdir,
            ),
            nprocs=WORLD_SIZE,
            join=False,
            start_method="spawn",
        )
        deadline = time.monotonic() + LAUNCH_TIMEOUT_S
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                for process in context.processes:
                    process.kill()
                pytest.fail(f"the collectives did not finish in {LAUNCH_TIMEOUT_S} s")
        return [
            torch.load(ranks.results_file(workdir, rank), weights_only=False)
            for rank in range(WORLD_SIZE)
        ]


@pytest.mark.parametrize("index", range(len(CASES)), ids=[str(c) for c in CASES])
def test_collective_matches_hand_computation(
    index: int, results: list[list[object]]
) -> None:
    case = CASES[index]
    inputs = case.inputs(index)
    for rank in range(WORLD_SIZE):
        got = results[rank][index]
        if case.error is not None:
            assert isinstance(got, str) and got.startswith("ValueError: "), got
            assert case.error in got and "\n" not in got, got
            continue
        assert not isinstance(got, str), f"rank {rank} raised {got}"
        if case.op == "all_reduce":
            got, input_after = got  # type: ignore[misc]
            assert torch.equal(input_after, inputs[rank]), "all_reduce changed input"
        expected = _expected(case, inputs, rank)
        if expected is None:
            assert got is None, f"rank {rank} is not the destination but got a tensor"
            continue
        if isinstance(expected, list):
            assert isinstance(got, list) and len(got) == len(expected), f"rank {rank}: {got!r}"
            assert all(torch.equal(g, e) for g, e in zip(got, expected, strict=True))
            continue
        assert isinstance(got, torch.Tensor), f"rank {rank} got {got!r}"
        assert got.dtype == case.dtype and got.shape == expected.shape, (
            f"rank {rank}: {got.dtype} {tuple(got.shape)}, "
            f"expected {case.dtype} {tuple(expected.shape)}"
        )
        assert torch.equal(got, expected), f"rank {rank} got different values"


def test_platform_finds_our_communicator() -> None:
    from vllm.distributed.device_communicators.base_device_communicator import (
        DeviceCommunicatorBase,
    )
    from vllm.platforms import current_platform
    from vllm.utils.import_utils import resolve_obj_by_qualname

    from vllm_npu.comm import NPUCommunicator

    qualname = current_platform.get_device_communicator_cls()
    assert resolve_obj_by_qualname(qualname) is NPUCommunicator
    assert issubclass(NPUCommunicator, DeviceCommunicatorBase)
