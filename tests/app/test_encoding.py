"""Mask encodings of the service's answers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from repvit_sam_client import decode_rle
from repvit_sam_server.encoding import encode_polygons, encode_rle


def _disk_with_a_hole(size: int = 400) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    radius = np.hypot(x - size / 2, y - size / 2)
    return (radius < size * 0.4) & (radius > size * 0.1)


def _fill(polygons: list[list[float]], shape: tuple[int, int]) -> np.ndarray:
    """Rasterises outlines (even-odd, so holes stay empty) as the labelling tools do."""
    canvas = np.zeros(shape, np.uint8)
    for polygon in polygons:
        points = np.round(np.asarray(polygon).reshape(-1, 2)).astype(np.int32)
        cv2.fillPoly(canvas, [points], 1)
        cv2.polylines(canvas, [points], True, 1)
    return canvas.astype(bool)


def _outline(polygon: list[float], shape: tuple[int, int]) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    points = np.round(np.asarray(polygon).reshape(-1, 2)).astype(np.int32)
    cv2.polylines(canvas, [points], True, 1)
    return canvas.astype(bool)


def test_polygons_simplify_a_smooth_shape_to_few_vertices_and_keep_its_area():
    mask = _disk_with_a_hole()
    traced = encode_polygons(mask, tolerance=0)
    simplified = encode_polygons(mask, tolerance=1.0)
    assert len(simplified) == 2  # the outer outline and the hole
    vertices = sum(len(p) // 2 for p in simplified)
    assert vertices < sum(len(p) // 2 for p in traced) / 10 and vertices < 200
    outer = max(simplified, key=len)
    hole = min(simplified, key=len)
    # A hole's outline runs along the region's own pixels: only its inside is empty.
    inside_hole = _fill([hole], mask.shape) & ~_outline(hole, mask.shape)
    drawn = _fill([outer], mask.shape) & ~inside_hole
    iou = (drawn & mask).sum() / (drawn | mask).sum()
    assert iou >= 0.98


@pytest.mark.parametrize("tolerance", [0.0, 1.0])
def test_polygons_of_empty_and_single_pixel_masks(tolerance):
    empty = np.zeros((10, 12), bool)
    assert encode_polygons(empty, tolerance) == []
    dot = empty.copy()
    dot[4, 5] = True
    assert encode_polygons(dot, tolerance) == []  # no area to outline


def test_polygon_vertices_are_pixel_coordinates():
    mask = np.zeros((20, 30), bool)
    mask[5:11, 8:21] = True  # rows 5..10, columns 8..20
    (polygon,) = encode_polygons(mask, tolerance=0.5)
    xy = np.asarray(polygon).reshape(-1, 2)
    assert sorted({tuple(p) for p in xy.tolist()}) == [(8, 5), (8, 10), (20, 5), (20, 10)]


def test_rle_round_trip():
    mask = _disk_with_a_hole(50)
    np.testing.assert_array_equal(decode_rle(encode_rle(mask)), mask)
