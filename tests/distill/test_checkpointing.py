"""Loading a distillation checkpoint that is not one: a ``CheckpointError`` naming the file and
what was expected, never a raw unpickling error, and never code run from the file."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from repvit_sam.distill.checkpointing import load_checkpoint, save_checkpoint
from repvit_sam.errors import CheckpointError


class _RunsCode:
    """Unpickling this calls ``os.system``: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _state() -> dict:
    return {
        "model": {"w": torch.zeros(2)},
        "optimizer": {},
        "scheduler": {},
        "step": 3,
        "config": {"lr": 0.1},
        "rng": [],
    }


def test_a_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "step_0000003.pt"
    torch.save({**_state(), "config": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path)
    message = str(raised.value)
    assert str(path) in message and "weights_only" in message
    assert "repvit-sam distill train" in message
    assert not marker.exists()


def test_a_plain_pickle_of_an_object_is_refused(tmp_path):
    path = tmp_path / "step_0000001.pt"
    path.write_bytes(pickle.dumps(_RunsCode(tmp_path / "ran"), protocol=2))
    with pytest.raises(CheckpointError, match="refuses"):
        load_checkpoint(path)
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("keep", [0, 10, 0.5])
def test_a_truncated_checkpoint_names_the_file(tmp_path, keep):
    good = save_checkpoint(tmp_path / "run", 7, _state())
    data = good.read_bytes()
    path = tmp_path / "step_0000007.pt"
    path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path)
    assert str(path) in str(raised.value) and "truncated" in str(raised.value)
    assert load_checkpoint(good)["step"] == 3  # the whole file still loads


def test_a_state_dict_that_is_not_a_training_checkpoint_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="needs keys"):
        load_checkpoint(path)
