"""Training checkpoints: model, optimizer, scheduler, step and every rank's RNG state.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only, so it loads with
``torch.load(..., weights_only=True)``::

    {"model": encoder state dict, "optimizer": ..., "scheduler": ..., "step": int,
     "config": dict, "rng": [per-rank {"torch", "cuda", "python", "numpy"}]}
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError

logger = logging.getLogger(__name__)

_NAME = re.compile(r"step_(\d+)\.pt$")


def rng_state(device: torch.device | None = None) -> dict:
    """This process's random states: torch's on the CPU and on ``device`` if it is a GPU,
    Python's and NumPy's.

    Only this process's GPU: a run resumed where fewer GPUs are visible must still load it.
    """
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if _is_cuda(device) else None,
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }


def _is_cuda(device: torch.device | None) -> bool:
    return device is not None and device.type == "cuda"


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    """Restores what ``rng_state`` returned, the GPU state onto ``device``."""
    torch.set_rng_state(state["torch"])
    cuda = state["cuda"]
    if isinstance(cuda, torch.Tensor) and _is_cuda(device):
        torch.cuda.set_rng_state(cuda, device)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, key, *rest = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), *rest))


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"step_{step:07d}.pt"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the checkpoints in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.search(p.name))]
    return sorted(found)


def save_checkpoint(folder: Path, step: int, state: dict, keep: int = 2) -> Path:
    """Writes ``state`` atomically as ``step_<step>.pt`` and keeps the newest ``keep`` files."""
    folder.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(folder, step)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    for _, old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    logger.info("saved checkpoint %s", path)
    return path


def load_checkpoint(path: Path) -> dict:
    """Reads a training checkpoint safely (``weights_only``) onto the CPU.

    Raises:
        CheckpointError: Unreadable, or not a training checkpoint of ``repvit-sam distill``.
    """
    expected = (
        "a checkpoint that `repvit-sam distill train` wrote (step_<n>.pt in --out/checkpoints)"
    )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"training checkpoint {path} pickles Python objects that a safe (weights_only) load "
            f"refuses ({_first_line(err)}); expected {expected}, which holds only tensors, "
            "numbers, strings, lists and dicts"
        ) from err
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"training checkpoint {path} is truncated or not a PyTorch file "
            f"({type(err).__name__}: {_first_line(err)}); expected {expected}"
        ) from err
    needed = {"model", "optimizer", "scheduler", "step", "config", "rng"}
    if not isinstance(state, dict) or not needed <= set(state):
        raise CheckpointError(
            f"{path} is not a `repvit-sam distill train` checkpoint (needs keys {sorted(needed)})"
        )
    return state


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    specific = [line for line in lines if "Unsupported global" in line or "GLOBAL" in line]
    return (specific or lines or ["no detail"])[0]
