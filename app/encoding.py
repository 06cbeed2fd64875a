"""Binary masks as COCO RLE, base64 PNG or polygons, and their area and bounding box."""

from __future__ import annotations

import base64
import io
from typing import Any, Literal

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

MaskFormat = Literal["rle", "png", "polygons"]


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of an HxW bool mask: ``{"size": [H, W], "counts": str}`` (pycocotools decodes)."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """The HxW bool mask of ``encode_rle`` output."""
    compressed = {"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(compressed).astype(bool)


def encode_png(mask: np.ndarray) -> str:
    """A 1-bit PNG of an HxW bool mask, base64-encoded."""
    stream = io.BytesIO()
    Image.fromarray(mask.astype(bool)).save(stream, format="PNG", optimize=False)
    return base64.b64encode(stream.getvalue()).decode("ascii")


def encode_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outlines of an HxW bool mask as COCO polygons ``[x0, y0, x1, y1, ...]`` in pixels.

    Each connected region (and hole) gives one closed polygon traced at the 0.5 level between
    pixel centres, so pixel (x, y) lies at coordinates (x, y).
    """
    from skimage.measure import find_contours  # only this format needs scikit-image

    padded = np.pad(mask.astype(np.float32), 1)
    polygons = []
    for contour in find_contours(padded, 0.5):
        if len(contour) < 3:
            continue
        xy = contour[:, ::-1] - 1.0
        polygons.append([round(float(v), 2) for v in xy.ravel()])
    return polygons


def encode_mask(mask: np.ndarray, fmt: MaskFormat) -> Any:
    """The ``segmentation`` field of a /segment answer for one HxW bool mask."""
    if fmt == "rle":
        return encode_rle(mask)
    if fmt == "png":
        return encode_png(mask)
    if fmt == "polygons":
        return encode_polygons(mask)
    raise ValueError(f"format must be 'rle', 'png' or 'polygons', got {fmt!r}")


def mask_bbox(mask: np.ndarray) -> list[int]:
    """``[x, y, w, h]`` of the mask's pixels (COCO convention), zeros for an empty mask."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        return [0, 0, 0, 0]
    y0, y1 = np.flatnonzero(rows)[[0, -1]]
    x0, x1 = np.flatnonzero(cols)[[0, -1]]
    return [int(x0), int(y0), int(x1 - x0 + 1), int(y1 - y0 + 1)]
