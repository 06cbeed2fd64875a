"""repvit_sam.MaskGenerator against segment-anything's SamAutomaticMaskGenerator."""

from __future__ import annotations

import time

import numpy as np
import pytest
import skimage.data
import torch
from segment_anything import SamAutomaticMaskGenerator

from repvit_sam import (
    CancelledError,
    DeadlineExceededError,
    InvalidInputError,
    MaskGenerator,
    build_repvit_sam,
)
from repvit_sam.regions import remove_small_regions
from tests.comparisons import amg_bbox, assert_masks_agree, stability_atol

# Random weights predict low IoU and soft logits: filters are lowered (identically for both
# generators) so that a non-trivial number of masks survives every stage.
LOW_FILTERS = {"pred_iou_thresh": 0.02, "stability_score_thresh": 0.03, "box_nms_thresh": 0.99}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    sam = build_repvit_sam(variant="m0_9", image_size=256)
    with torch.no_grad():
        # Sharper logits, so that stability scores spread over [0, 1].
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(20)
    return sam


def assert_same_records(ours: list[dict], theirs: list[dict]) -> None:
    """Our batched decoder sums in another order than SAM's: the floats agree to rounding, and
    mask pixels at logit 0 or +-1 may flip, moving bbox, area and stability with them."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        inter = np.logical_and(a["segmentation"], b["segmentation"]).sum()
        union = np.logical_or(a["segmentation"], b["segmentation"]).sum()
        assert inter / max(union, 1) >= 0.99
        assert_masks_agree(a["segmentation"], b["segmentation"])
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=1e-4)
        tolerance = stability_atol(b["area"], b["segmentation"].size)
        assert a["stability_score"] == pytest.approx(b["stability_score"], abs=tolerance)
        assert a["bbox"] == amg_bbox(a["segmentation"]) and b["bbox"] == amg_bbox(b["segmentation"])
        assert a["area"] == pytest.approx(b["area"], rel=0.01)
        assert a["point_coords"][0] == pytest.approx(b["point_coords"][0])
        assert a["crop_box"] == b["crop_box"]
        assert set(a) == set(b)


@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_same_masks_as_segment_anything(model, name):
    image = getattr(skimage.data, name)()
    params = {"points_per_side": 8, **LOW_FILTERS}
    theirs = SamAutomaticMaskGenerator(model, **params).generate(image)
    ours = MaskGenerator(model, **params).generate(image)
    assert len(theirs) > 5
    assert_same_records(ours, theirs)
    assert isinstance(ours[0]["segmentation"], np.ndarray)
    assert ours[0]["segmentation"].shape == image.shape[:2]


def test_same_masks_with_crops(model):
    image = skimage.data.chelsea()[::3, ::3].copy()
    params = {"points_per_side": 2, "crop_n_layers": 1, **LOW_FILTERS, "crop_nms_thresh": 0.9}
    theirs = SamAutomaticMaskGenerator(model, **params).generate(image)
    ours = MaskGenerator(model, **params).generate(image)
    assert theirs
    assert_same_records(ours, theirs)


def test_rle_output_modes(model):
    image = skimage.data.coffee()[::2, ::2].copy()
    params = {"points_per_side": 4, **LOW_FILTERS}
    binary = MaskGenerator(model, **params).generate(image)
    # RLE modes encode each chunk of upsample_batch masks as it is drawn: several chunks here.
    rle = MaskGenerator(model, output_mode="uncompressed_rle", upsample_batch=3, **params)
    rle = rle.generate(image)
    coco = MaskGenerator(model, output_mode="coco_rle", upsample_batch=2, **params).generate(image)
    from pycocotools import mask as mask_utils
    from segment_anything.utils.amg import rle_to_mask

    assert len(binary) > 3 and len(binary) == len(rle) == len(coco)
    for b, r, c in zip(binary, rle, coco, strict=True):
        np.testing.assert_array_equal(rle_to_mask(r["segmentation"]), b["segmentation"])
        np.testing.assert_array_equal(mask_utils.decode(c["segmentation"]) > 0, b["segmentation"])
        assert r["area"] == c["area"] == b["segmentation"].sum()


def test_progress_cancel_and_deadline(model):
    image = skimage.data.coffee()[::4, ::4].copy()
    calls = []
    generator = MaskGenerator(model, points_per_side=4, points_per_batch=4)
    generator.generate(image, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 5) for i in range(1, 6)]  # one embedding + 4 batches of 4 points
    with pytest.raises(CancelledError):
        generator.generate(image, cancel=lambda: True)
    with pytest.raises(DeadlineExceededError):
        generator.generate(image, deadline=time.monotonic() - 1)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("points_per_side", 0),
        ("points_per_batch", -1),
        ("pred_iou_thresh", 1.5),
        ("pred_iou_thresh", 10**400),  # beyond float: no OverflowError
        ("stability_score_thresh", float("nan")),
        ("stability_score_offset", 0.0),
        ("box_nms_thresh", "high"),
        ("crop_n_layers", -1),
        ("crop_overlap_ratio", 1.0),
        ("min_mask_region_area", 2.5),
        ("output_mode", "png"),
    ],
)
def test_bad_parameters_are_named(model, name, value):
    with pytest.raises(InvalidInputError, match=name):
        MaskGenerator(model, **{name: value})


def test_point_grids_exclusive(model):
    with pytest.raises(InvalidInputError, match="point_grids"):
        MaskGenerator(model, point_grids=[np.array([[0.5, 0.5]])])  # points_per_side too
    grid = MaskGenerator(model, points_per_side=None, point_grids=[np.array([[0.5, 0.5]])])
    assert grid.point_grids[0].shape == (1, 2)
    assert grid.pred_iou_thresh == 0.88  # parameters read like SamAutomaticMaskGenerator's


def test_remove_small_regions_without_opencv():
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:12, 2:12] = True
    mask[6, 6] = False  # a one-pixel hole
    mask[16, 16] = True  # a one-pixel island
    filled, changed = remove_small_regions(mask, 4, mode="holes")
    assert changed and filled[6, 6]
    cleaned, changed = remove_small_regions(filled, 4, mode="islands")
    assert changed and not cleaned[16, 16] and cleaned[2:12, 2:12].all()
    _, changed = remove_small_regions(cleaned, 4, mode="islands")
    assert not changed


@pytest.mark.parametrize(
    ("points", "layers", "factor"),
    [(1, 1, 2), (4, 2, 4), (32, 1, 64), (32, np.int64(64), np.int64(2))],  # 2**64 wraps in numpy
)
def test_crop_layers_must_keep_a_point_per_side(model, points, layers, factor):
    # segment-anything divides by zero on a crop layer grid of no points.
    with pytest.raises(InvalidInputError, match="crop_n_points_downscale_factor"):
        MaskGenerator(
            model,
            points_per_side=points,
            crop_n_layers=layers,
            crop_n_points_downscale_factor=factor,
        )
    MaskGenerator(
        model, points_per_side=points, crop_n_layers=layers, crop_n_points_downscale_factor=1
    )


@pytest.mark.parametrize("shape", [(1, 2, 3), (2, 1, 3), (1, 1, 3)])
def test_crop_layers_on_images_a_few_pixels_wide(model, shape):
    # Some crops of such images are 0 pixels wide (segment-anything fails on them): skipped.
    generator = MaskGenerator(model, points_per_side=2, crop_n_layers=1, pred_iou_thresh=0)
    records = generator.generate(np.full(shape, 100, np.uint8))
    assert all(r["segmentation"].shape == shape[:2] for r in records)


def test_crops_go_through_the_given_encoder(model):
    calls = []

    def encoder(images):
        calls.append(tuple(images.shape))
        return model.image_encoder(images)

    image = skimage.data.coffee()[::4, ::4].copy()
    params = {"points_per_side": 2, "crop_n_layers": 1, **LOW_FILTERS}
    ours = MaskGenerator(model, encoder=encoder, **params).generate(image)
    assert len(calls) == 5  # the image and its 4 crops
    assert_same_records(ours, MaskGenerator(model, **params).generate(image))


def test_generate_and_detect_from_an_embedding_alone(small_model, rgb_image):
    from repvit_sam import EdgeDetector, InvalidInputError, Predictor

    embedding = Predictor(small_model).embed(rgb_image)
    params = {"points_per_side": 4, "pred_iou_thresh": 0, "stability_score_thresh": 0}
    with_pixels = MaskGenerator(small_model, **params).generate(rgb_image, embedding=embedding)
    alone = MaskGenerator(small_model, **params).generate(embedding=embedding)
    assert [r["bbox"] for r in alone] == [r["bbox"] for r in with_pixels]
    edges = EdgeDetector(small_model, points_per_side=4)
    np.testing.assert_array_equal(
        edges.detect(embedding=embedding).edges, edges.detect(rgb_image, embedding=embedding).edges
    )
    with pytest.raises(InvalidInputError, match="crop_n_layers > 0 needs the image"):
        MaskGenerator(small_model, crop_n_layers=1).generate(embedding=embedding)
    with pytest.raises(InvalidInputError, match="give the image, or its embedding"):
        MaskGenerator(small_model).generate()


def test_cancel_is_checked_while_masks_are_drawn(model):
    """After the last grid batch, the masks are still drawn and encoded: a caller that left
    (or a click waiting on the model thread) is heard there too, between chunks."""
    image = skimage.data.coffee()[::4, ::4].copy()
    generator = MaskGenerator(
        model, points_per_side=4, points_per_batch=16, upsample_batch=2, **LOW_FILTERS
    )
    progress: list[int] = []
    at_checks: list[int] = []

    def cancel() -> bool:
        at_checks.append(len(progress))
        return False

    records = generator.generate(
        image, progress=lambda done, total: progress.append(done), cancel=cancel
    )
    assert len(records) > 2
    # Checked after the last step, once per drawn chunk of upsample_batch masks.
    assert at_checks.count(len(progress)) >= 1 + -(-len(records) // 2)
    stopped = iter(range(len(at_checks) - 1, -1, -1))
    with pytest.raises(CancelledError):
        generator.generate(image, cancel=lambda: next(stopped) == 0)
