"""Connected-region clean-up of binary masks, with scipy instead of OpenCV."""

from __future__ import annotations

import numpy as np


def remove_small_regions(
    mask: np.ndarray, area_thresh: float, mode: str
) -> tuple[np.ndarray, bool]:
    """``segment_anything.utils.amg.remove_small_regions`` without OpenCV.

    Fills holes (``mode="holes"``) or removes islands (``mode="islands"``) smaller than
    ``area_thresh`` pixels in an HxW bool mask, with 8-connectivity like OpenCV's
    ``connectedComponentsWithStats(..., 8)``. If every island is small, the largest is kept.

    Returns:
        The HxW bool mask and whether it changed.
    """
    from scipy import ndimage

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    correct_holes = mode == "holes"
    working = correct_holes ^ mask.astype(bool)
    regions, n_regions = ndimage.label(working, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(regions.ravel(), minlength=n_regions + 1)[1:]
    small = [i + 1 for i, size in enumerate(sizes) if size < area_thresh]
    if not small:
        return mask, False
    fill_labels = [0, *small]
    if not correct_holes:
        fill_labels = [i for i in range(n_regions + 1) if i not in fill_labels]
        if not fill_labels:
            fill_labels = [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill_labels), True
