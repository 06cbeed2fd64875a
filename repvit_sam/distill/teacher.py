"""SAM teachers: segment-anything ViT image encoders built and loaded strictly, and SAM's exact
preprocessing.

The teachers are built as ``segment_anything.build_sam._build_sam`` builds them (patch 16,
window 14, relative positions, LayerNorm eps 1e-6). Their image size is fixed by the checkpoint
(the position embeddings have one entry per patch), so the student is trained at the teacher's
``img_size``. ``tiny`` is a two-block teacher at 64x64 input for tests.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import (
    ImageEncoderViT,
    Sam,
)
from segment_anything.utils.transforms import ResizeLongestSide

from ..assembly import PIXEL_MEAN, PIXEL_STD, PROMPT_EMBED_DIM, assemble_sam
from ..checkpoint import CheckpointSource, describe_checkpoint, key_differences, read_state_dict
from ..errors import CheckpointError, InvalidInputError

logger = logging.getLogger(__name__)

SAM_CHECKPOINTS_URL = "https://github.com/facebookresearch/segment-anything#model-checkpoints"


@dataclass(frozen=True)
class TeacherConfig:
    """A segment-anything ViT image encoder.

    Attributes:
        name: Registry name, as in ``segment_anything.sam_model_registry``.
        embed_dim: Width of the transformer.
        depth: Number of transformer blocks.
        num_heads: Attention heads per block.
        global_attn_indexes: Blocks with global (not windowed) attention.
        img_size: Side of the square input; the embedding is ``img_size // 16`` on a side.
        window_size: Side of the attention windows, in patches.
        checkpoint_name: The official file, for error messages.
    """

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    img_size: int = 1024
    window_size: int = 14
    checkpoint_name: str = ""

    patch_size = 16

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding (64 for SAM's 1024 input)."""
        return self.img_size // self.patch_size


TEACHERS: dict[str, TeacherConfig] = {
    config.name: config
    for config in (
        TeacherConfig(
            "vit_h", 1280, 32, 16, (7, 15, 23, 31), checkpoint_name="sam_vit_h_4b8939.pth"
        ),
        TeacherConfig(
            "vit_l", 1024, 24, 16, (5, 11, 17, 23), checkpoint_name="sam_vit_l_0b3195.pth"
        ),
        TeacherConfig("vit_b", 768, 12, 12, (2, 5, 8, 11), checkpoint_name="sam_vit_b_01ec64.pth"),
        TeacherConfig("tiny", 32, 2, 2, (1,), img_size=64, window_size=4),
    )
}
_BY_WIDTH = {config.embed_dim: config.name for config in TEACHERS.values()}


def get_teacher(name: str) -> TeacherConfig:
    """Looks up a teacher by name (``vit_h``, ``vit_l``, ``vit_b``, or ``tiny`` for tests)."""
    if name not in TEACHERS:
        raise InvalidInputError(f"unknown teacher {name!r}; expected one of {sorted(TEACHERS)}")
    return TEACHERS[name]


def build_teacher_encoder(config: TeacherConfig) -> ImageEncoderViT:
    """A randomly initialised teacher encoder: Bx3xSxS -> Bx256x(S/16)x(S/16)."""
    return ImageEncoderViT(
        depth=config.depth,
        embed_dim=config.embed_dim,
        img_size=config.img_size,
        mlp_ratio=4,
        norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=config.num_heads,
        patch_size=config.patch_size,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=config.global_attn_indexes,
        window_size=config.window_size,
        out_chans=PROMPT_EMBED_DIM,
    )


def build_teacher_sam(config: TeacherConfig) -> Sam:
    """A randomly initialised full SAM with the teacher's encoder (for evaluation and tests)."""
    encoder = build_teacher_encoder(config)
    return assemble_sam(encoder, config.embedding_size, config.img_size).eval()


def read_teacher_checkpoint(config: TeacherConfig, checkpoint: CheckpointSource) -> dict:
    """Reads a SAM checkpoint and checks that it is one of ``config``'s architecture.

    Raises:
        CheckpointError: Unreadable, not a SAM checkpoint, or a SAM of another size (the
            message names what the file is and which ``--teacher`` fits it).
    """
    state_dict = read_state_dict(checkpoint)
    source = "the given state dict" if isinstance(checkpoint, Mapping) else str(checkpoint)
    with torch.device("meta"):
        expected = {k: v.shape for k, v in build_teacher_sam(config).state_dict().items()}
    missing, unexpected, mismatched = key_differences(state_dict, expected)
    if missing or unexpected or mismatched:
        raise CheckpointError(
            _mismatch(config, state_dict, source, missing, unexpected, mismatched)
        )
    return state_dict


def _mismatch(
    config: TeacherConfig,
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    missing: list[str],
    unexpected: list[str],
    mismatched: list[str],
) -> str:
    wanted = f"a segment-anything {config.name} checkpoint"
    if config.checkpoint_name:
        wanted += f" ({config.checkpoint_name} from {SAM_CHECKPOINTS_URL})"
    lines = [
        f"{source} is {describe_checkpoint(state_dict)}, "
        f"but --teacher {config.name} needs {wanted}."
    ]
    patch = state_dict.get("image_encoder.patch_embed.proj.weight")
    if (
        patch is not None
        and patch.dim() == 4
        and _BY_WIDTH.get(patch.shape[0], config.name) != config.name
    ):
        lines.append(f"  It fits --teacher {_BY_WIDTH[patch.shape[0]]}.")
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("mismatched", mismatched),
    ):
        if items:
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            lines.append(f"  {len(items)} {label} keys: {', '.join(items[:5])}{more}")
    return "\n".join(lines)


def load_teacher_sam(
    config: TeacherConfig, checkpoint: CheckpointSource, device: str | torch.device = "cpu"
) -> Sam:
    """The full teacher SAM with the checkpoint's weights, in eval mode (strict loading)."""
    state_dict = read_teacher_checkpoint(config, checkpoint)
    sam = build_teacher_sam(config)
    sam.load_state_dict(state_dict, strict=True)
    logger.info("loaded teacher %s from %s", config.name, checkpoint)
    return sam.to(device).eval()


def load_teacher_encoder(
    config: TeacherConfig, checkpoint: CheckpointSource, device: str | torch.device = "cpu"
) -> ImageEncoderViT:
    """Only the teacher's image encoder, loaded strictly from a full SAM checkpoint."""
    state_dict = read_teacher_checkpoint(config, checkpoint)
    prefix = "image_encoder."
    encoder = build_teacher_encoder(config)
    encoder.load_state_dict(
        {k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)},
        strict=True,
    )
    logger.info("loaded teacher encoder %s from %s", config.name, checkpoint)
    return encoder.to(device).eval()


def preprocess(image: np.ndarray, img_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """SAM's exact preprocessing: ``ResizeLongestSide.apply_image`` then ``Sam.preprocess``.

    Args:
        image: HxWx3 uint8 RGB.
        img_size: Side of the square model input.

    Returns:
        The 3x``img_size``x``img_size`` float32 input (normalised with SAM's pixel mean/std,
        zero-padded at the bottom and right) and the (h, w) of the resized image inside it.
    """
    resized = ResizeLongestSide(img_size).apply_image(image)
    x = torch.as_tensor(resized).permute(2, 0, 1).contiguous().float()
    mean = torch.tensor(PIXEL_MEAN).view(-1, 1, 1)
    std = torch.tensor(PIXEL_STD).view(-1, 1, 1)
    x = (x - mean) / std
    h, w = x.shape[-2:]
    return F.pad(x, (0, img_size - w, 0, img_size - h)), (h, w)
