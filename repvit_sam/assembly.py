"""The architecture: SAM's prompt encoder and mask decoder around a RepViT variant, and the
checkpoint layouts it implies (no weights are read here; ``build`` and ``checkpoint`` load them).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import nn

from .errors import InvalidInputError
from .modeling import VARIANTS, RepViTConfig, RepViTImageEncoder, fuse_modules, get_variant

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


def assemble_variant(
    variant: str, drop_path_rate: float = 0.0, image_size: int | None = None
) -> Sam:
    """A randomly initialised RepViT-SAM of ``variant`` (input side ``image_size``, default the
    variant's 1024)."""
    config = resolve_variant(variant)
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
        model = assemble_variant(variant)
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


def resolve_variant(name: str) -> RepViTConfig:
    """The variant called ``name`` (``"m2_3"``, ``"repvit_m2_3"``, ``"m2.3"``).

    Raises:
        InvalidInputError: No such variant (the message lists them).
    """
    try:
        return get_variant(name)
    except ValueError as err:
        raise InvalidInputError(str(err)) from None
