"""Full IEEE float32 on CUDA, where PyTorch lets cuDNN convolutions use TF32 by default.

TF32 keeps 10 bits of mantissa. On an Ampere or later GPU it moves RepViT-SAM's embedding by
about 5e-3, the whole parity tolerance, so the fp32 paths switch it off while they run.
"""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def full_float32(device: torch.device) -> Iterator[None]:
    """Inside, float32 convolutions and matmuls on CUDA never use TF32; elsewhere a no-op.

    The flags are process-wide: they are restored on exit, so code running in other threads
    meanwhile (rare: the service runs its model on one thread) also gets full float32.
    """
    if device.type != "cuda":
        yield
        return
    switches = _tf32_switches()
    saved = [getattr(owner, name) for owner, name, _ in switches]
    for owner, name, value in switches:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for (owner, name, _), value in zip(switches, saved, strict=True):
            setattr(owner, name, value)
