from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.utils.transforms import ResizeLongestSide

from repvit_sam import CheckpointError, InvalidInputError
from repvit_sam.distill import TEACHERS, get_teacher, preprocess
from repvit_sam.distill.teacher import (
    build_teacher_sam,
    load_teacher_encoder,
    read_teacher_checkpoint,
)


@pytest.mark.parametrize("shape", [(48, 80), (90, 60), (64, 64)])
def test_preprocess_is_sams(shape):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    sam = build_teacher_sam(TEACHERS["tiny"])
    resized = ResizeLongestSide(64).apply_image(image)
    expected = sam.preprocess(torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None])[0]
    got, (h, w) = preprocess(image, 64)
    assert (h, w) == resized.shape[:2] and max(h, w) == 64
    assert got.shape == (3, 64, 64) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_teacher_registry_matches_segment_anything():
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        ours = build_teacher_sam(TEACHERS["vit_b"]).state_dict()
        theirs = sam_model_registry["vit_b"]().state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_tiny_teacher_embedding_shape(teacher_checkpoint):
    encoder = load_teacher_encoder(get_teacher("tiny"), teacher_checkpoint)
    with torch.no_grad():
        assert encoder(torch.zeros(1, 3, 64, 64)).shape == (1, 256, 4, 4)


def test_checkpoint_of_another_teacher_names_it(teacher_checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="--teacher vit_h needs a segment-anything vit_h"):
        read_teacher_checkpoint(get_teacher("vit_h"), teacher_checkpoint)
    fake = {"image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16)}
    with pytest.raises(CheckpointError, match=r"SAM ViT-B(.|\n)*It fits --teacher vit_b"):
        read_teacher_checkpoint(get_teacher("vit_h"), fake)


def test_unknown_teacher():
    with pytest.raises(InvalidInputError, match="unknown teacher 'vit_x'"):
        get_teacher("vit_x")
