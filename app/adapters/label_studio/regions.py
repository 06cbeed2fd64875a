"""A mask as the regions Label Studio shows: a brush region, Label Studio's own RLE of the mask
(encoded by ``label_studio_converter.brush.mask2rle``: the mask repeated as RGBA bytes,
run-length and bit packed; not COCO RLE), or polygon regions, one per outline, in percents.
"""

from __future__ import annotations

import uuid

import numpy as np

from ...encoding import encode_polygons
from .config import Output
from .schemas import BrushValue, PolygonValue, Region


def regions(
    mask: np.ndarray, score: float, outputs: tuple[Output, ...], label: str | None, tolerance: float
) -> list[Region]:
    """The regions of HxW bool ``mask`` for each output tag (one brush region per BrushLabels
    tag, one polygon region per outline for each PolygonLabels tag)."""
    # The converter's package imports nltk (seconds): only brush answers wait for it, once.
    from label_studio_converter.brush import mask2rle

    height, width = mask.shape
    labels = [label] if label is not None else []
    found: list[Region] = []
    for output in outputs:
        if output.type == "brushlabels":
            value: list[BrushValue | PolygonValue] = [
                BrushValue(rle=mask2rle(mask.astype(np.uint8) * 255), brushlabels=labels)
            ]
        else:
            value = [
                PolygonValue(points=points, polygonlabels=labels)
                for points in polygon_points(mask, tolerance)
            ]
        found.extend(
            Region(
                id=uuid.uuid4().hex[:10],
                from_name=output.from_name,
                to_name=output.to_name,
                original_width=width,
                original_height=height,
                type=output.type,
                value=item,
                score=score,
            )
            for item in value
        )
    return found


def polygon_points(mask: np.ndarray, tolerance: float) -> list[list[list[float]]]:
    """Each outer outline of the mask's regions as ``[[x, y], ...]`` percents of the image.

    The outlines are the service's own (``encode_polygons``: OpenCV, simplified within
    ``tolerance`` pixels) without holes, which a Label Studio polygon cannot have. Their
    vertices are the centres of boundary pixels: pixel column ``i`` spans ``[i, i + 1)``
    of the image's width, so its centre is at ``(i + 0.5) / W`` of it.
    """
    height, width = mask.shape
    return [
        [
            [(x + 0.5) * 100 / width, (y + 0.5) * 100 / height]
            for x, y in zip(polygon[0::2], polygon[1::2], strict=True)
        ]
        for polygon in encode_polygons(mask, tolerance, holes=False)
    ]
