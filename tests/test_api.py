from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from repvit_sam import InvalidInputError, Predictor, RepViTSAM
from tests.comparisons import LOGIT_ATOL, assert_masks_match_logits


@pytest.fixture
def sam(small_checkpoint):
    return RepViTSAM(small_checkpoint, variant="m0_9", fuse=True, image_size=256)


def _count_encoder_calls(sam):
    calls = []
    sam.model.image_encoder.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_predict_shapes_and_reuse(sam, rgb_image, tmp_path):
    calls = _count_encoder_calls(sam)
    result = sam.predict(rgb_image, points=[[80, 50]], labels=[1], multimask=True)
    assert result.masks.shape == (3, 120, 160) and result.masks.dtype == bool
    assert result.scores.shape == (3,) and result.low_res_logits.shape == (3, 64, 64)
    assert result.best_mask.shape == (120, 160)
    path = tmp_path / "same.png"
    Image.fromarray(rgb_image).save(path)
    buffer = io.BytesIO()
    Image.fromarray(rgb_image).save(buffer, format="PNG")
    for source in (
        path,
        str(path),
        buffer.getvalue(),
        Image.fromarray(rgb_image),
        rgb_image.copy(),
    ):
        sam.predict(source, boxes=[10, 10, 100, 100])
    assert len(calls) == 1  # one image, encoded once


def test_batched_boxes(sam, rgb_image):
    result = sam.predict(rgb_image, boxes=[[10, 10, 100, 100], [50, 30, 150, 110]])
    assert result.masks.shape == (2, 1, 120, 160) and result.scores.shape == (2, 1)
    assert result.best_mask.shape == (2, 120, 160)
    single = sam.predict(rgb_image, boxes=[[10, 10, 100, 100]])
    assert single.masks.shape == (1, 1, 120, 160)


def test_matches_the_predictor(sam, small_checkpoint, rgb_image):
    from repvit_sam import build_repvit_sam

    predictor = Predictor(
        build_repvit_sam(small_checkpoint, variant="m0_9", fuse=True, image_size=256)
    )
    predictor.set_image(rgb_image)
    # ``sam`` encodes with the channels-last torch backend, ``predictor`` contiguously: the same
    # function, other roundings, so masks are compared where the logit is clear of 0.
    logits, scores, low_res = predictor.predict(
        np.array([[80, 50]]), np.array([1]), multimask_output=False, return_logits=True
    )
    result = sam.predict(rgb_image, points=[[80, 50]])  # labels default to foreground
    np.testing.assert_allclose(result.low_res_logits, low_res, atol=LOGIT_ATOL)
    assert_masks_match_logits(result.masks, logits, LOGIT_ATOL)
    np.testing.assert_allclose(result.scores, scores, atol=1e-6)


def test_refinement_with_low_res_logits(sam, rgb_image):
    first = sam.predict(rgb_image, points=[[80, 50]], multimask=True)
    refined = sam.predict(rgb_image, points=[[80, 50]], mask_input=first.low_res_logits[first.best])
    assert refined.masks.shape == (1, 120, 160)


def test_grayscale_and_rgba_are_converted(sam, rgb_image):
    gray = sam.predict(rgb_image[..., 0], points=[[5, 5]])
    assert gray.masks.shape == (1, 120, 160)
    rgba = np.dstack([rgb_image, np.zeros(rgb_image.shape[:2], np.uint8)])
    calls = _count_encoder_calls(sam)
    sam.predict(rgb_image, points=[[5, 5]])
    sam.predict(rgba, points=[[5, 5]])  # alpha dropped: same pixels, same embedding
    assert len(calls) == 1


def test_cache_is_bounded(small_checkpoint, rgb_image):
    sam = RepViTSAM(small_checkpoint, variant="m0_9", cache_size=1, image_size=256)
    calls = _count_encoder_calls(sam)
    other = rgb_image[::-1].copy()
    for image in (rgb_image, other, rgb_image):
        sam.embed(image)
    assert len(calls) == 3
    sam.embed(rgb_image)
    assert len(calls) == 3


def test_embedding_can_be_passed(sam, rgb_image):
    embedding = sam.embed(rgb_image)
    assert sam.predict(embedding, boxes=[0, 0, 50, 50]).masks.shape == (1, 120, 160)


def test_checkpoint_required():
    with pytest.raises(InvalidInputError, match="from_pretrained"):
        RepViTSAM()


def test_from_model(small_model, rgb_image):
    sam = RepViTSAM.from_model(small_model)
    assert sam.predict(rgb_image, points=[[10, 10]]).masks.shape == (1, 120, 160)


def test_bad_prompt_names_argument(sam, rgb_image):
    with pytest.raises(InvalidInputError, match="point_coords"):
        sam.predict(rgb_image, points=[[1000, 10]])
    with pytest.raises(InvalidInputError, match="box"):
        sam.predict(rgb_image, boxes=[10, 10, 5, 5])


@pytest.mark.parametrize(
    ("prompt", "name"),
    [
        ({"points": [[1, 2], [3]]}, "points"),
        ({"points": [[1, 2, 3]]}, "point_coords"),
        ({"points": "abc"}, "points"),
        ({"points": {"x": 1}}, "points"),
        ({"boxes": [[1, 2, 3, 4], [1, 2]]}, "boxes"),
    ],
)
def test_malformed_prompts_without_labels_name_the_argument(sam, rgb_image, prompt, name):
    with pytest.raises(InvalidInputError, match=name):
        sam.predict(rgb_image, **prompt)


def test_from_pretrained_uses_the_cache(tmp_path, small_model, monkeypatch, rgb_image):
    import torch

    from repvit_sam import api, weights

    path = tmp_path / "repvit_sam.pt"
    torch.save(small_model.state_dict(), path)
    monkeypatch.setitem(
        weights.WEIGHTS,
        "small",
        weights.PretrainedWeights("small", "m0_9", "http://127.0.0.1:9/none", "repvit_sam.pt"),
    )
    monkeypatch.setattr(api, "get_weights_spec", weights.get_weights_spec)
    sam = RepViTSAM.from_pretrained("small", cache_dir=tmp_path)
    assert sam.predict(rgb_image, points=[[10, 10]]).masks.shape == (1, 120, 160)
