"""Assembling RepViT-SAM: a RepViT encoder with segment-anything's prompt encoder and decoder."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from segment_anything.modeling import Sam

from .assembly import (
    assemble_variant,
    identify_variant,
    resolve_variant,
)
from .checkpoint import CheckpointSource, load_state_dict_strict, read_state_dict
from .errors import CheckpointError, InvalidInputError
from .modeling import (
    DEFAULT_VARIANT,
    fuse_modules,
)

logger = logging.getLogger(__name__)


def fuse(model: Sam) -> Sam:
    """Re-parameterises ``model``'s image encoder in place for inference and returns the model.

    Every BatchNorm is folded into its convolution and each RepVGG depthwise branch
    (3x3 + 1x1 + identity) becomes one 3x3 convolution. The model is put in eval mode, since
    the fused model computes the inference-mode function. Fusing twice is harmless.
    """
    model.eval()
    fuse_modules(model.image_encoder)
    return model


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device`` that exists on this machine.

    Raises:
        InvalidInputError: Not a torch device, CUDA or MPS where there is none, or a CUDA
            index beyond the devices present.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InvalidInputError(f"device {device!r} is not a torch device ({err})") from err
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInputError(f"device {device!r} requested but CUDA is not available here")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise InvalidInputError(
                f"device {device!r} requested but this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidInputError(f"device {device!r} requested but MPS is not available here")
    return resolved


def build_repvit_sam(
    checkpoint: CheckpointSource | None = None,
    *,
    variant: str = DEFAULT_VARIANT,
    fuse: bool = False,
    device: str | torch.device = "cpu",
    drop_path_rate: float = 0.0,
    image_size: int | None = None,
) -> Sam:
    """Builds RepViT-SAM as a ``segment_anything.modeling.Sam`` in eval mode.

    Args:
        checkpoint: Path of a state dict (raw, or nested under ``"model"``/``"state_dict"``),
            or a state dict. None leaves the weights randomly initialised.
        variant: Encoder variant from ``repvit_sam.modeling.VARIANTS``; only ``"m2_3"`` has
            official weights.
        fuse: Re-parameterise the encoder for inference (same function, fewer operations). A
            checkpoint saved from a fused model is recognised and gives a fused model anyway.
        device: Where to put the model.
        drop_path_rate: Stochastic depth for training the encoder (distillation).
        image_size: Input side other than the standard 1024 (small test models, distillation at
            reduced resolution); the official weights expect 1024.

    Raises:
        CheckpointError: The checkpoint is unreadable or is not of ``variant`` (the message says
            what it is and lists the first missing/unexpected keys).
    """
    resolved = resolve_device(device)
    model = assemble_variant(variant, drop_path_rate, image_size)
    if checkpoint is not None:
        _load(model, checkpoint, variant)
    model.eval()
    if fuse:
        fuse_modules(model.image_encoder)
    logger.info("built RepViT-SAM %s (fused=%s) on %s", variant, fuse, resolved)
    return model.to(resolved)


def _load(model: Sam, checkpoint: CheckpointSource, variant: str) -> None:
    source = "the given state dict" if isinstance(checkpoint, Mapping) else str(checkpoint)
    state_dict = read_state_dict(checkpoint)
    name = resolve_variant(variant).name
    wanted = f"a RepViT-SAM {name} checkpoint"
    found = identify_variant(state_dict)
    if found == (name, True):
        # A state dict saved from a fused model: fuse first so the layouts agree.
        fuse_modules(model.image_encoder)
    elif found is not None and found[0] != name:
        raise CheckpointError(
            f"{source} is a RepViT-SAM {found[0]} checkpoint, but variant={name!r} was requested; "
            f"pass variant={found[0]!r}"
        )
    load_state_dict_strict(model, state_dict, wanted, source)
