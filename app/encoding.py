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


def encode_png(mask: np.ndarray) -> str:
    """A 1-bit PNG of an HxW bool mask, base64-encoded."""
    stream = io.BytesIO()
    Image.fromarray(mask.astype(bool)).save(stream, format="PNG", optimize=False)
    return base64.b64encode(stream.getvalue()).decode("ascii")


def encode_polygons(
    mask: np.ndarray, tolerance: float = 1.0, holes: bool = True
) -> list[list[float]]:
    """Outlines of an HxW bool mask as COCO polygons ``[x0, y0, x1, y1, ...]`` in pixels.

    OpenCV traces each connected region and, with ``holes``, each hole (``findContours``,
    vertices at the centres of the boundary pixels) and simplifies it with Douglas-Peucker
    (``approxPolyDP``): no vertex of the traced outline lies farther than ``tolerance`` pixels
    from the polygon. A traced outline has a vertex per boundary pixel; simplified, a smooth
    shape keeps a few dozen. Regions that simplify to fewer than 3 vertices (single pixels,
    thin lines) are dropped.
    """
    import cv2  # only this format needs OpenCV

    contours, _ = cv2.findContours(
        np.ascontiguousarray(mask, dtype=np.uint8),
        cv2.RETR_CCOMP if holes else cv2.RETR_EXTERNAL,
        cv2.CHAIN_APPROX_NONE,
    )
    polygons = []
    for contour in contours:
        simplified = cv2.approxPolyDP(contour, tolerance, True) if tolerance > 0 else contour
        if len(simplified) >= 3:
            polygons.append([float(v) for v in simplified.reshape(-1)])
    return polygons


def encode_mask(mask: np.ndarray, fmt: MaskFormat, polygon_tolerance: float = 1.0) -> Any:
    """The ``segmentation`` field of a /segment answer for one HxW bool mask."""
    if fmt == "rle":
        return encode_rle(mask)
    if fmt == "png":
        return encode_png(mask)
    if fmt == "polygons":
        return encode_polygons(mask, polygon_tolerance)
    raise ValueError(f"format must be 'rle', 'png' or 'polygons', got {fmt!r}")


def mask_bbox(mask: np.ndarray) -> list[int]:
    """``[x, y, w, h]`` of the mask's pixels (COCO convention), zeros for an empty mask."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        return [0, 0, 0, 0]
    y0, y1 = np.flatnonzero(rows)[[0, -1]]
    x0, x1 = np.flatnonzero(cols)[[0, -1]]
    return [int(x0), int(y0), int(x1 - x0 + 1), int(y1 - y0 + 1)]
