from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from repvit_sam import ImageEmbedding, ImageNotSetError, InvalidInputError, Predictor


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(90, 130, 3), dtype=np.uint8)
    image[20:60, 30:90] = (240, 20, 20)
    return image


@pytest.fixture(scope="module")
def predictors(small_model, image):
    ours, theirs = Predictor(small_model), SamPredictor(small_model)
    ours.set_image(image)
    theirs.set_image(image)
    return ours, theirs


def assert_same_prediction(actual, expected, logits_atol=1e-4):
    """Equal up to float rounding: the batched decoder sums in another order than SAM's."""
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype
    masks, scores, logits = actual
    assert (masks == expected[0]).mean() >= 0.9999
    np.testing.assert_allclose(scores, expected[1], atol=1e-5)
    np.testing.assert_allclose(logits, expected[2], atol=logits_atol)


PROMPTS = [
    {"point_coords": np.array([[50.0, 40.0]]), "point_labels": np.array([1])},
    {"point_coords": np.array([[50, 40], [100, 70]]), "point_labels": np.array([1, 0])},
    {"box": np.array([20, 10, 100, 80])},
    {"box": np.array([[20, 10, 100, 80]])},
    {
        "point_coords": np.array([[60, 45]]),
        "point_labels": np.array([1]),
        "box": np.array([20, 10, 100, 80]),
    },
]


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("multimask", [True, False])
def test_same_outputs_as_segment_anything(predictors, prompt, multimask):
    ours, theirs = predictors
    expected = theirs.predict(**prompt, multimask_output=multimask)
    assert_same_prediction(ours.predict(**prompt, multimask_output=multimask), expected)
    logits = ours.predict(**prompt, multimask_output=multimask, return_logits=True)[0]
    expected_logits = theirs.predict(**prompt, multimask_output=multimask, return_logits=True)[0]
    np.testing.assert_allclose(logits, expected_logits, atol=1e-4)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_unbatched_decoder_is_segment_anything_exactly(small_model, predictors, prompt):
    _, theirs = predictors
    plain = Predictor(small_model, batched_decoder=False)
    plain.set_embedding(ImageEmbedding(theirs.features, theirs.original_size, theirs.input_size))
    for a, e in zip(plain.predict(**prompt), theirs.predict(**prompt), strict=True):
        np.testing.assert_array_equal(a, e)


def test_predict_torch_and_embedding_match_segment_anything(predictors):
    ours, theirs = predictors
    assert torch.equal(ours.get_image_embedding(), theirs.get_image_embedding())
    assert ours.original_size == theirs.original_size and ours.input_size == theirs.input_size
    boxes = ours.transform.apply_boxes_torch(
        torch.tensor([[10.0, 10, 60, 60], [5, 5, 120, 85]]), ours.original_size
    )
    expected = theirs.predict_torch(None, None, boxes=boxes, multimask_output=True)
    actual = ours.predict_torch(None, None, boxes=boxes, multimask_output=True)
    assert_same_prediction([t.numpy() for t in actual], [t.numpy() for t in expected])


def test_several_boxes_equal_one_call_per_box(predictors):
    ours, _ = predictors
    boxes = np.array([[10, 10, 60, 60], [5, 5, 120, 85], [30, 20, 90, 70]])
    points, labels = np.array([[40, 40]]), np.array([1])
    masks, scores, logits = ours.predict(points, labels, box=boxes, multimask_output=True)
    assert (
        masks.shape == (3, 3, 90, 130) and scores.shape == (3, 3) and logits.shape == (3, 3, 64, 64)
    )
    for i, box in enumerate(boxes):
        one = ours.predict(points, labels, box=box, multimask_output=True)
        np.testing.assert_allclose(one[1], scores[i], atol=1e-5)
        assert (one[0] == masks[i]).mean() > 0.9999


def test_masks_drawn_later_from_the_logits_are_the_same(predictors):
    ours, _ = predictors
    boxes = np.array([[10, 10, 60, 60], [5, 5, 120, 85]])
    masks, scores, logits = ours.predict(box=boxes)
    none, later_scores, later_logits = ours.predict(box=boxes, upscale=False)
    assert none is None
    np.testing.assert_array_equal(later_scores, scores)
    np.testing.assert_array_equal(later_logits, logits)
    drawn = ours.upscale_masks(torch.from_numpy(later_logits[1:]), ours.embedding)
    np.testing.assert_array_equal(drawn.numpy(), masks[1:])


def test_decoded_points_draw_what_predict_draws_for_each_point(predictors):
    """decode_points is predict for single foreground points, drawing only the chosen tokens."""
    ours, _ = predictors
    points = np.array([[50.0, 40.0], [10.0, 80.0], [120.0, 5.0]])
    decoded = ours.decode_points(ours.embedding, points)
    chosen = torch.zeros_like(decoded.iou, dtype=torch.bool)
    chosen[:, 1:] = True
    chosen[1, 2] = False  # a token left out is not drawn
    drawn = decoded.logits(chosen)
    assert drawn.shape == (int(chosen.sum()), *decoded.low_res_size)
    assert decoded.low_res_size == ours.low_res_size(ours.embedding)
    row = 0
    for index, point in enumerate(points):
        _, scores, logits = ours.predict(
            point_coords=point[None], point_labels=np.array([1]), multimask_output=True
        )
        np.testing.assert_allclose(decoded.iou[index, 1:].numpy(), scores, atol=1e-5)
        for token in range(3):
            if chosen[index, token + 1]:
                np.testing.assert_allclose(drawn[row].numpy(), logits[token], atol=1e-4)
                row += 1
    # Drawing a subset of prompts: the rows of prompt 2 only.
    only = decoded.logits(chosen[[2]], prompts=torch.tensor([2]))
    np.testing.assert_allclose(only.numpy(), drawn[-3:].numpy(), atol=1e-6)


def test_embedding_is_a_value(small_model, image, predictors):
    ours, _ = predictors
    predictor = Predictor(small_model)
    embedding = predictor.embed(image)
    assert isinstance(embedding, ImageEmbedding) and not predictor.is_image_set
    assert embedding.features.shape == (1, 256, 16, 16)
    assert embedding.original_size == (90, 130) and embedding.nbytes == 256 * 16 * 16 * 4
    restored = ImageEmbedding.from_numpy(embedding.numpy(), (90, 130), embedding.input_size)
    prompt = {"point_coords": np.array([[50, 40]]), "point_labels": np.array([1])}
    a = predictor.predict(**prompt, embedding=restored)
    b = ours.predict(**prompt)
    np.testing.assert_array_equal(a[0], b[0])


def test_mask_input_refines(predictors):
    ours, theirs = predictors
    _, scores, logits = ours.predict(np.array([[50, 40]]), np.array([1]))
    best = logits[np.argmax(scores)][None]
    actual = ours.predict(
        np.array([[50, 40]]), np.array([1]), mask_input=best, multimask_output=False
    )
    expected = theirs.predict(
        np.array([[50, 40]]), np.array([1]), mask_input=best, multimask_output=False
    )
    assert_same_prediction(actual, expected)


def test_bgr_images_are_flipped(small_model, image, predictors):
    ours, _ = predictors
    bgr = Predictor(small_model).embed(np.ascontiguousarray(image[..., ::-1]), image_format="BGR")
    assert torch.equal(bgr.features, ours.get_image_embedding())


def test_no_image_set(small_model):
    predictor = Predictor(small_model)
    with pytest.raises(ImageNotSetError, match=r"set_image"):
        predictor.predict(np.array([[1, 1]]), np.array([1]))
    with pytest.raises(ImageNotSetError):
        predictor.get_image_embedding()


BAD_PROMPTS = [
    ({"point_coords": [[10, 10]]}, "point_coords must be supplied with point_labels"),
    ({"point_labels": [1]}, "point_labels were given without point_coords"),
    ({"point_coords": [[10, 10], [20, 20]], "point_labels": [1]}, "one label per point"),
    ({"point_coords": [10, 10], "point_labels": [1]}, "Nx2"),
    ({"point_coords": np.zeros((0, 2)), "point_labels": np.zeros(0)}, "empty"),
    ({"point_coords": [[np.nan, 10]], "point_labels": [1]}, "NaN"),
    ({"point_coords": [[np.inf, 10]], "point_labels": [1]}, "infinite"),
    ({"point_coords": [[500, 10]], "point_labels": [1]}, "outside the 130x90 image"),
    ({"point_coords": [[-1, 10]], "point_labels": [1]}, "outside"),
    ({"point_coords": [[10, 10]], "point_labels": [2]}, "1 \\(foreground\\) or 0"),
    ({"point_coords": [["a", "b"]], "point_labels": [1]}, "numeric"),
    ({"box": [10, 10, 5, 50]}, "empty or inverted"),
    ({"box": [10, 10, 10, 50]}, "empty or inverted"),
    ({"box": [10, 10, 50]}, "4 numbers or Bx4"),
    ({"box": np.zeros((0, 4))}, "box is empty"),
    ({"box": [0, 0, 200, 50]}, "outside"),
    ({"box": [0, 0, 20, 50], "mask_input": np.zeros((1, 32, 32))}, "mask_input must be"),
    (
        {"box": [[0, 0, 20, 50]] * 2, "mask_input": np.zeros((3, 1, 64, 64))},
        "3 masks for 2 prompts",
    ),
]


@pytest.mark.parametrize(("prompt", "message"), BAD_PROMPTS)
def test_bad_prompts_are_clear_errors(predictors, prompt, message):
    ours, _ = predictors
    with pytest.raises(InvalidInputError, match=message):
        ours.predict(**prompt)
    with pytest.raises(ValueError):  # also catchable as ValueError
        ours.predict(**prompt)


@pytest.mark.parametrize(
    ("bad_image", "message"),
    [
        (np.zeros((10, 10), np.uint8), "HxWx3"),
        (np.zeros((10, 10, 4), np.uint8), "HxWx3"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        ([[1, 2, 3]], "numpy array"),
        # The small model resizes the longest side to 256: 513x1 would be 256x0.
        (np.zeros((1, 513, 3), np.uint8), "513x1: .* short side would be 0 pixels"),
        (np.zeros((513, 1, 3), np.uint8), "at most 512 times"),
    ],
)
def test_bad_images_are_clear_errors(small_model, bad_image, message):
    with pytest.raises(InvalidInputError, match=message):
        Predictor(small_model).set_image(bad_image)


def test_bad_image_format(small_model, image):
    with pytest.raises(InvalidInputError, match="image_format"):
        Predictor(small_model).set_image(image, image_format="RGBA")


def test_embedding_of_wrong_type(predictors):
    ours, _ = predictors
    with pytest.raises(TypeError, match="ImageEmbedding"):
        ours.predict(box=[1, 1, 5, 5], embedding=np.zeros((1, 256, 16, 16)))
    with pytest.raises(TypeError, match="ImageEmbedding"):
        ours.set_embedding(torch.zeros(1, 256, 64, 64))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        ImageEmbedding(np.zeros((1, 256, 64, 64), np.float32), (90, 130), (177, 256))


@pytest.mark.parametrize("shape", [(1, 256, 64, 64), (1, 128, 16, 16)])  # model: 256x16x16
def test_embedding_of_another_model_is_a_named_error(predictors, shape):
    ours, _ = predictors
    foreign = ImageEmbedding(torch.zeros(shape), (90, 130), (177, 256))
    with pytest.raises(InvalidInputError, match="another model or image size"):
        ours.predict(box=[1, 1, 5, 5], embedding=foreign)


def test_reset_image(small_model, image):
    predictor = Predictor(small_model)
    predictor.set_image(image)
    assert predictor.is_image_set
    predictor.reset_image()
    assert not predictor.is_image_set
