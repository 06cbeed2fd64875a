"""The typed answers of ``Client``, and the mask decoding they need (numpy and Pillow only).

Import them from ``repvit_sam_client`` (or ``repvit_sam.client``, which re-exports them).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "AutoMask",
    "EmbedResult",
    "Embedding",
    "MaskResult",
    "MasksResult",
    "SegmentResult",
    "decode_rle",
]


@dataclass(frozen=True)
class EmbedResult:
    embedding_id: str
    width: int
    height: int
    cached: bool


@dataclass(frozen=True)
class Embedding:
    """An embedding fetched from the service (``GET /embeddings/{id}``), as numpy.

    ``repvit_sam.client.Client.embedding`` gives the same as a ``repvit_sam.ImageEmbedding``,
    to run the decoder locally.

    Attributes:
        features: 1x256x64x64 float32, the image encoder's output.
        original_size: (H, W) of the image as uploaded, in pixels.
        input_size: (h, w) of the resized image fed to the encoder, before padding.
    """

    features: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]


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
            return decode_rle(self.segmentation)
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
        return decode_rle(self.segmentation)


@dataclass(frozen=True)
class MasksResult:
    embedding_id: str
    width: int
    height: int
    masks: list[AutoMask]


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """COCO compressed RLE ``{"size": [h, w], "counts": str}`` (column-major run lengths) to an
    HxW bool mask, without pycocotools."""
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
