"""Assembling RepViT-SAM: a RepViT encoder with segment-anything's prompt encoder and decoder."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import nn

from .checkpoint import CheckpointSource, load_state_dict_strict, read_state_dict
from .errors import CheckpointError, InvalidInputError
from .modeling import DEFAULT_VARIANT, VARIANTS, RepViTImageEncoder, fuse_modules, get_variant

logger = logging.getLogger(__name__)

PROMPT_EMBED_DIM = 256
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def assemble_sam(image_encoder: nn.Module, embedding_size: int, img_size: int) -> Sam:
    """``image_encoder`` with SAM's standard prompt encoder and mask decoder (random weights).

    Args:
        image_encoder: Maps Bx3xSxS (S = ``img_size``) to Bx256xExE (E = ``embedding_size``).
        embedding_size: Side of the image embedding (64 for SAM's 1024 input).
        img_size: Side of the encoder's square input.
    """
    return Sam(
        image_encoder=image_encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=PROMPT_EMBED_DIM,
            image_embedding_size=(embedding_size, embedding_size),
            input_image_size=(img_size, img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8
            ),
            transformer_dim=PROMPT_EMBED_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )


def _assemble(variant: str, drop_path_rate: float = 0.0, image_size: int | None = None) -> Sam:
    config = get_variant(variant)
    if image_size is not None:
        if image_size < 64 or image_size % config.output_stride:
            raise InvalidInputError(
                f"image_size must be a multiple of {config.output_stride} and >= 64, "
                f"got {image_size}"
            )
        config = dataclasses.replace(config, img_size=image_size)
    encoder = RepViTImageEncoder(config, drop_path_rate=drop_path_rate)
    return assemble_sam(encoder, config.embedding_size, config.img_size)


@functools.cache
def expected_shapes(variant: str, fused: bool = False) -> Mapping[str, torch.Size]:
    """Every state-dict key of a variant and its shape, computed without allocating weights."""
    with torch.device("meta"):
        model = _assemble(variant)
        if fused:
            fuse_modules(model)
    return {k: v.shape for k, v in model.state_dict().items()}


def identify_variant(state_dict: Mapping[str, torch.Tensor]) -> tuple[str, bool] | None:
    """The registered variant (and whether fused) whose layout ``state_dict`` has exactly."""
    keys = {k for k in state_dict if not k.endswith("num_batches_tracked")}
    for name in VARIANTS:
        for fused in (False, True):
            shapes = expected_shapes(name, fused)
            wanted = {k for k in shapes if not k.endswith("num_batches_tracked")}
            if keys == wanted and all(tuple(state_dict[k].shape) == tuple(shapes[k]) for k in keys):
                return name, fused
    return None


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
    model = _assemble(variant, drop_path_rate, image_size)
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
    name = get_variant(variant).name
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
