"""Full IEEE float32 on CUDA, where PyTorch lets cuDNN convolutions use TF32 by default.

TF32 keeps 10 bits of mantissa. Emulated on the CPU, it moved a test model's embedding by up to
4.9e-3 against the parity tolerance of 5e-3, so the fp32 paths switch it off while they run.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch


def _tf32_switches() -> list[tuple[object, str, object]]:
    """(owner, attribute, full-float32 value) of the flags that allow TF32."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if hasattr(conv, "fp32_precision"):
        # PyTorch >= 2.9: reading the legacy allow_tf32 flags raises once these are in use.
        return [
            (conv, "fp32_precision", "ieee"),
            (torch.backends.cuda.matmul, "fp32_precision", "ieee"),
        ]
    return [
        (torch.backends.cudnn, "allow_tf32", False),
        (torch.backends.cuda.matmul, "allow_tf32", False),
    ]


class _Switch:
    """The process-wide flags, set by the first of overlapping users (threads) and restored
    by the last: each restoring its own snapshot would leave them wrong."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: list[tuple[object, str, object]] = []

    def enter(self) -> None:
        with self._lock:
            if self._users == 0:
                switches = _tf32_switches()
                self._saved = [(owner, name, getattr(owner, name)) for owner, name, _ in switches]
                for owner, name, value in switches:
                    setattr(owner, name, value)
            self._users += 1

    def leave(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                for owner, name, value in self._saved:
                    setattr(owner, name, value)


_switch = _Switch()


@contextlib.contextmanager
def full_float32(device: torch.device) -> Iterator[None]:
    """Inside, float32 convolutions and matmuls on CUDA never use TF32; elsewhere a no-op.

    The flags are process-wide: they are restored when the last thread inside leaves, so
    code running in other threads meanwhile also gets full float32.
    """
    if device.type != "cuda":
        yield
        return
    _switch.enter()
    try:
        yield
    finally:
        _switch.leave()
