"""Process groups from ``torchrun``'s environment: gloo on CPU, nccl on CUDA."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .. import build
from ..errors import InvalidInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: its rank, the world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str, local_rank: int = 0, world_size: int = 1) -> torch.device:
    """``"auto"`` is ``cuda:<local rank>`` where CUDA is available, else the CPU; ``"cuda"``
    is ``cuda:<local rank>``.

    Raises:
        InvalidInputError: Not a torch device, one this machine lacks, or a CUDA index given
            to several processes (every rank would land on the same GPU).
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = build.resolve_device(device)
    if resolved.type != "cuda":
        return resolved
    if resolved.index is not None and world_size > 1:
        raise InvalidInputError(
            f"device {device!r} names one GPU for all {world_size} processes; under torchrun "
            "pass 'cuda' or 'auto' and each process takes cuda:<LOCAL_RANK>"
        )
    return build.resolve_device(f"cuda:{local_rank if resolved.index is None else resolved.index}")


def setup(device: str = "auto") -> DistEnv:
    """Joins the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1), else runs alone.

    The backend is nccl for CUDA devices and gloo otherwise. Validate inputs before calling this,
    so that bad input fails on every rank before anything waits on the others. A process
    group that already exists is used as it is (and left alone by ``teardown``): a script that
    runs several steps in one process should create it once.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank, world_size)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    owns_group = world_size > 1 and not dist.is_initialized()
    if owns_group:
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        logger.info(
            "rank %d/%d joined the %s process group on %s", rank, world_size, backend, resolved
        )
    return DistEnv(rank, world_size, local_rank, resolved, owns_group)


def barrier(env: DistEnv) -> None:
    """Waits for every rank (no-op when alone)."""
    if env.distributed:
        if env.device.type == "cuda":
            dist.barrier(device_ids=[env.device.index])
        else:
            dist.barrier()


def teardown(env: DistEnv) -> None:
    """Leaves the process group if ``setup`` joined it; a group the caller made is theirs."""
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()
