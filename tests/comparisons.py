"""Comparing what two computations of the same function produce (STYLE.md, rule 12).

Two code paths agree on floats only to rounding: the service's channels-last encoder and the
library's contiguous one, batched and single decoders, other thread counts, two CPUs (AVX-512
and AVX2 sum in other orders). Whatever is rounded or thresholded from those floats flips where a
value sits on the boundary: a grey level at .5, a mask pixel at logit 0, a stability count at
logit +-1. So the floats are compared with a tolerance and what is derived from them by an
explicit rule, never bit for bit. The rules follow ../shared/reference/README.md, whose
tolerances are for different computations of the same function (>= 99.9% of mask pixels equal).

Import it as ``tests.comparisons`` (the repository root is on ``sys.path`` through pytest's
``pythonpath``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from repvit_sam import ImageEmbedding, Predictor

# The reference's rule for masks from two computations of the same function.
MASK_AGREEMENT = 0.999
# Low-res logits of the two torch encoder paths (channels-last, as the service and RepViTSAM run
# it, and contiguous, the plain Predictor's) differ by < 1e-6 on the test models; this bound
# leaves room for other CPUs. Upscaling interpolates, so full-size logits differ no more.
LOGIT_ATOL = 1e-4


def assert_8bit_maps_agree(
    got: np.ndarray, want: np.ndarray, want_float: np.ndarray, atol: float
) -> None:
    """HxW uint8 maps rounded from float maps in [0, 1] (x 255) that agree within ``atol``.

    They may differ by one grey level, and only where ``want_float`` (``want``'s float map)
    lies within ``atol`` of a rounding boundary: elsewhere both floats round alike.
    """
    assert got.shape == want.shape == want_float.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype == np.uint8, (got.dtype, want.dtype)
    apart = np.abs(got.astype(int) - want.astype(int))
    assert apart.max() <= 1, f"{apart.max()} grey levels apart"
    scaled = np.clip(want_float.astype(np.float64), 0, 1) * 255
    on_boundary = np.abs(scaled - np.floor(scaled) - 0.5) <= 255 * atol
    elsewhere = int(((apart > 0) & ~on_boundary).sum())
    assert elsewhere == 0, f"{elsewhere} pixels differ away from a rounding boundary"


def assert_masks_agree(got: np.ndarray, want: np.ndarray) -> None:
    """Boolean masks of any shape: at least ``MASK_AGREEMENT`` of their pixels equal."""
    assert got.shape == want.shape and got.dtype == want.dtype == bool, (got.shape, want.shape)
    agreement = float((got == want).mean())
    assert agreement >= MASK_AGREEMENT, f"only {agreement:.4%} of the mask pixels are equal"


def assert_masks_match_logits(got: np.ndarray, logits: np.ndarray, margin: float) -> None:
    """``got``: boolean masks another computation thresholded at 0 from logits that agree with
    ``logits`` (the same shape) within ``margin``. They are ``logits > 0`` at every pixel whose
    logit is more than ``margin`` from 0, and at ``MASK_AGREEMENT`` of all pixels."""
    want = logits > 0
    assert_masks_agree(got, want)
    decided = np.abs(logits) > margin
    flipped = int((got != want)[decided].sum())
    assert flipped == 0, f"{flipped} mask pixels differ where |logit| > {margin:g}"


def decode_rle(segmentation: Mapping[str, Any]) -> np.ndarray:
    """COCO RLE ``{"size": [h, w], "counts": str or bytes}`` -> HxW bool."""
    counts = segmentation["counts"]
    if isinstance(counts, str):
        counts = counts.encode()
    return mask_utils.decode({"size": list(segmentation["size"]), "counts": counts}).astype(bool)


def amg_bbox(mask: np.ndarray) -> list[int]:
    """The ``bbox`` segment-anything's automatic mask generator records for ``mask``:
    [x0, y0, x1 - x0, y1 - y0] with x1, y1 the last pixels in, [0, 0, 0, 0] when empty."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return [0, 0, 0, 0]
    return [int(xs.min()), int(ys.min()), int(np.ptp(xs)), int(np.ptp(ys))]


def stability_atol(area: int, pixels: int) -> float:
    """How far two computations' stability scores may be apart for a mask of ``area`` pixels
    in an image of ``pixels``.

    Stability is |logits > 1| / |logits > -1|; each pixel that flips at either threshold moves
    it by at most 1 / area (the mask at -1 holds the mask at 0). The masks at +-1 may differ in
    as many pixels as the mask itself: (1 - MASK_AGREEMENT) of the image each.
    """
    return 1e-5 + 2 * (1 - MASK_AGREEMENT) * pixels / max(area, 1)


def amg_record_logits(
    predictor: Predictor, embedding: ImageEmbedding, record: Mapping
) -> np.ndarray:
    """HxW full-size logits of an automatic-mask record (of the whole image, no crop layers),
    decoded again from its point prompt: the generator keeps some of the three masks each grid
    point decodes to, and the record's is the one whose IoU prediction it carries."""
    height, width = embedding.original_size
    assert list(record["crop_box"]) == [0, 0, width, height], "crop layers are not decoded here"
    logits, scores, _ = predictor.predict(
        np.asarray(record["point_coords"], dtype=np.float64),
        np.array([1]),
        multimask_output=True,
        return_logits=True,
        embedding=embedding,
    )
    best = int(np.argmin(np.abs(scores - record["predicted_iou"])))
    assert abs(scores[best] - record["predicted_iou"]) <= 1e-5, (scores, record["predicted_iou"])
    return logits[best]


def assert_amg_records_agree(
    got: Sequence[Mapping[str, Any]],
    want: Sequence[Mapping[str, Any]],
    want_logits: Sequence[np.ndarray],
    iou_atol: float,
) -> None:
    """Automatic-mask records with COCO RLE ``segmentation`` from two computations.

    Masks by ``assert_masks_match_logits`` against the full-size logits of ``want``'s masks
    (``amg_record_logits``) within ``LOGIT_ATOL``; ``area`` and ``bbox`` exactly those of each
    record's own mask; ``predicted_iou`` within ``iou_atol``; ``stability_score`` by
    ``stability_atol``.
    """
    assert len(got) == len(want) == len(want_logits)
    for a, b, logits in zip(got, want, want_logits, strict=True):
        assert set(a) == set(b)
        assert list(a["segmentation"]["size"]) == list(b["segmentation"]["size"])
        mask_a, mask_b = decode_rle(a["segmentation"]), decode_rle(b["segmentation"])
        assert_masks_match_logits(mask_b, logits, LOGIT_ATOL)  # the logits of the right mask
        assert_masks_match_logits(mask_a, logits, LOGIT_ATOL)
        for record, mask in ((a, mask_a), (b, mask_b)):
            assert record["area"] == int(mask.sum())
            assert list(record["bbox"]) == amg_bbox(mask)
        assert list(a["crop_box"]) == list(b["crop_box"])
        np.testing.assert_allclose(a["point_coords"], b["point_coords"], atol=1e-5)
        assert abs(a["predicted_iou"] - b["predicted_iou"]) <= iou_atol
        tolerance = stability_atol(b["area"], mask_b.size)
        assert abs(a["stability_score"] - b["stability_score"]) <= tolerance
