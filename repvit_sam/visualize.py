"""Pictures for people: masks drawn over the image."""

from __future__ import annotations

import numpy as np

_PALETTE = np.array(
    [
        [30, 144, 255],
        [255, 99, 71],
        [50, 205, 50],
        [255, 215, 0],
        [186, 85, 211],
        [0, 206, 209],
        [255, 140, 0],
        [220, 20, 60],
    ],
    dtype=np.float32,
)


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of an HxW boolean mask that touch a pixel outside it (4-neighbourhood)."""
    padded = np.pad(mask, 1, mode="constant", constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & mask
    return mask & ~interior


def overlay_masks(image: np.ndarray, masks: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Draws each HxW mask of ``masks`` (NxHxW or HxW) in its own colour, with an outline.

    Returns:
        HxWx3 uint8 picture.
    """
    masks = masks[None] if masks.ndim == 2 else masks
    picture = image.astype(np.float32).copy()
    for index, mask in enumerate(masks.astype(bool)):
        colour = _PALETTE[index % len(_PALETTE)]
        picture[mask] = (1 - alpha) * picture[mask] + alpha * colour
        picture[mask_outline(mask)] = colour
    return np.clip(picture, 0, 255).astype(np.uint8)
