"""The typed answers of ``repvit_sam.client.Client``, and the mask decoding they need.

Import them from ``repvit_sam.client``, which re-exports them.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["AutoMask", "EmbedResult", "MaskResult", "MasksResult", "SegmentResult"]


@dataclass(frozen=True)
class EmbedResult:
    embedding_id: str
    width: int
    height: int
    cached: bool


@dataclass(frozen=True)
class MaskResult:
    """One mask of a /segment answer; ``segmentation`` as the requested format returned it."""

    prompt: int
    score: float
    area: int
    bbox: tuple[int, int, int, int]
    segmentation: Any

    def decode(self) -> np.ndarray:
        """The HxW bool mask, from RLE or PNG."""
        if isinstance(self.segmentation, dict):
            return _decode_rle(self.segmentation)
        if isinstance(self.segmentation, str):
            with Image.open(io.BytesIO(base64.b64decode(self.segmentation))) as image:
                return np.asarray(image.convert("L")) > 0
        raise TypeError("polygons cannot be decoded to a mask here; request format='rle'")


@dataclass(frozen=True)
class SegmentResult:
    embedding_id: str
    width: int
    height: int
    masks: list[MaskResult]
    logits_id: str


@dataclass(frozen=True)
class AutoMask:
    """One record of /masks, as ``SamAutomaticMaskGenerator.generate`` with COCO RLE output.

    Attributes:
        segmentation: COCO RLE ``{"size": [h, w], "counts": str}``; ``decode()`` gives the mask.
        area: Pixels in the mask.
        bbox: (x, y, w, h) of the mask in pixels.
        predicted_iou: The decoder's predicted IoU.
        point_coords: [[x, y]], the point prompt in pixels.
        stability_score: IoU of the mask thresholded above and below the mask threshold.
        crop_box: (x, y, w, h) of the image crop the mask was found in.
    """

    segmentation: dict[str, Any]
    area: int
    bbox: tuple[int, int, int, int]
    predicted_iou: float
    point_coords: list[list[float]]
    stability_score: float
    crop_box: tuple[int, int, int, int]

    def decode(self) -> np.ndarray:
        """The HxW bool mask."""
        return _decode_rle(self.segmentation)


@dataclass(frozen=True)
class MasksResult:
    embedding_id: str
    width: int
    height: int
    masks: list[AutoMask]


def _decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """COCO compressed RLE (column-major run lengths) to an HxW bool mask, without pycocotools."""
    height, width = rle["size"]
    counts, text, index = [], rle["counts"].encode("ascii"), 0
    while index < len(text):
        value, shift, more = 0, 0, True
        while more:
            char = text[index] - 48
            value |= (char & 0x1F) << (5 * shift)
            more = bool(char & 0x20)
            index += 1
            shift += 1
            if not more and char & 0x10:
                value |= -1 << (5 * shift)
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    flat = np.zeros(height * width, dtype=bool)
    position = 0
    for run, count in enumerate(counts):
        if run % 2:
            flat[position : position + count] = True
        position += count
    return flat.reshape(width, height).T
