"""Device strings: a clear InvalidInputError for any device this machine lacks."""

from __future__ import annotations

import pytest
import torch

from repvit_sam import InvalidInputError
from repvit_sam.build import resolve_device
from repvit_sam.distill.distributed import resolve_device as resolve_rank_device


@pytest.fixture
def two_gpus(monkeypatch):
    """Pretends that this machine has cuda:0 and cuda:1 (torch.device needs no GPU)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_cpu_and_malformed_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(InvalidInputError, match="'tpu:7' is not a torch device"):
        resolve_device("tpu:7")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_where_there_is_none():
    for device in ("cuda", "cuda:0"):
        for resolve in (resolve_device, resolve_rank_device):
            with pytest.raises(InvalidInputError, match="CUDA is not available"):
                resolve(device)
    assert resolve_rank_device("auto") == torch.device("cpu")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_where_there_is_none():
    with pytest.raises(InvalidInputError, match="MPS is not available"):
        resolve_device("mps")


def test_cuda_index_beyond_the_devices_present(two_gpus):
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(InvalidInputError, match=r"2 CUDA device\(s\), cuda:0 to cuda:1"):
        resolve_device("cuda:2")


def test_each_torchrun_process_takes_its_local_rank(two_gpus):
    assert resolve_rank_device("auto", local_rank=1, world_size=2) == torch.device("cuda", 1)
    assert resolve_rank_device("cuda", local_rank=1, world_size=2) == torch.device("cuda", 1)
    assert resolve_rank_device("cuda:1", local_rank=0, world_size=1) == torch.device("cuda", 1)
    # One index for every process would put them all on one GPU: refused on every rank alike.
    for rank in (0, 1):
        with pytest.raises(InvalidInputError, match="names one GPU for all 2 processes"):
            resolve_rank_device("cuda:0", local_rank=rank, world_size=2)
    with pytest.raises(InvalidInputError, match="cuda:2"):
        resolve_rank_device("cuda", local_rank=2, world_size=3)
