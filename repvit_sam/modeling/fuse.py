"""Structural re-parameterisation: BatchNorms and parallel branches folded into convolutions."""

from __future__ import annotations

import torch
from torch import nn

from .conv_bn import Conv2dBN
from .repvit_block import RepVGGDW

_FUSABLE = (Conv2dBN, RepVGGDW)


def is_fused(module: nn.Module) -> bool:
    """True when no re-parameterisable (training-time) module is left in ``module``."""
    return not any(isinstance(m, _FUSABLE) for m in module.modules())


@torch.no_grad()
def fuse_modules(module: nn.Module) -> nn.Module:
    """Replaces, in place, every ``Conv2dBN`` and ``RepVGGDW`` below ``module`` by one convolution.

    The result computes the same function in inference mode and has a different state-dict
    layout, so fuse after loading a checkpoint. Fusing a fused module changes nothing.

    Returns:
        ``module`` itself (or its replacement when ``module`` is itself fusable).
    """
    if isinstance(module, _FUSABLE):
        return module.fuse()
    for name, child in module.named_children():
        setattr(module, name, fuse_modules(child))
    return module
