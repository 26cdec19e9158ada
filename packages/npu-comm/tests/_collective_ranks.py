"""The rank side of the collective tests: what each spawned process runs.

Spawned processes import their target by module name, so it lives here and
not in the pytest module (which pytest imports under a path-derived name).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from vllm_npu.comm import NPUCommunicator

Call = tuple[str, int, int, list[torch.Tensor]]
"""One collective to run: (operation, dim, root rank, the input of every rank)."""


def results_file(results_dir: Path, rank: int) -> Path:
    return results_dir / f"rank{rank}.pt"


def run(
    rank: int,
    world_size: int,
    init_method: str,
    dist_backend: str,
    calls: list[Call],
    results_dir: Path,
) -> None:
    """Join the group, run every call in order and save what each returned."""
    dist.init_process_group(
        dist_backend, init_method=init_method, rank=rank, world_size=world_size
    )
    try:
        ranks = list(range(world_size))
        # As vLLM's GroupCoordinator builds it: a device group on the
        # platform's backend, a gloo CPU group, and the rank's device.
        device_group = dist.new_group(ranks, backend=dist_backend)
        cpu_group = dist.new_group(ranks, backend="gloo")
        communicator = NPUCommunicator(
            cpu_group=cpu_group,
            device=torch.device(f"cpu:{rank}"),
            device_group=device_group,
            unique_name="tp:0",
        )
        results = [
            _call(communicator, op, dim, root, inputs[rank].clone())
            for op, dim, root, inputs in calls
        ]
        torch.save(results, results_file(results_dir, rank))
    finally:
        dist.destroy_process_group()


UNEVEN_SIZES = (2, 3)
"""Rows per rank of the uneven collectives (all_gatherv, reduce_scatterv)."""


def _call(
    communicator: NPUCommunicator, op: str, dim: int, root: int, tensor: torch.Tensor
) -> object:
    """What ``op`` returned (with the input after the call), or the error it raised.

    An error is returned rather than raised so that the other cases still run.
    """
    try:
        if op == "all_reduce":
            return communicator.all_reduce(tensor), tensor
        if op == "all_gather":
            return communicator.all_gather(tensor, dim)
        if op == "reduce_scatter":
            return communicator.reduce_scatter(tensor, dim)
        if op == "all_gatherv":
            # Rank r contributes the first UNEVEN_SIZES[r] rows of its tensor.
            own = tensor[: UNEVEN_SIZES[communicator.rank_in_group]]
            return communicator.all_gatherv([own, own * 2], dim=0, sizes=list(UNEVEN_SIZES))
        if op == "reduce_scatterv":
            return communicator.reduce_scatterv(tensor, dim=0, sizes=list(UNEVEN_SIZES))
        if op == "gather":
            return communicator.gather(tensor, dst=root, dim=dim)
        if op == "broadcast":
            return communicator.broadcast(tensor, src=root)
        if op in ("send_recv", "send_recv_default_peers"):
            return _send_recv(communicator, tensor, explicit=op == "send_recv")
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    raise ValueError(f"unknown collective {op!r}")


def _send_recv(
    communicator: NPUCommunicator, tensor: torch.Tensor, explicit: bool
) -> torch.Tensor:
    """Pass each rank's tensor to the next rank; even ranks send first."""
    rank, world_size = communicator.rank_in_group, communicator.world_size
    dst = (rank + 1) % world_size if explicit else None
    src = (rank - 1) % world_size if explicit else None
    if rank % 2 == 0:
        communicator.send(tensor, dst)
        return communicator.recv(tensor.size(), tensor.dtype, src)
    received = communicator.recv(tensor.size(), tensor.dtype, src)
    communicator.send(tensor, dst)
    return received
