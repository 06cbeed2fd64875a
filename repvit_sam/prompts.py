"""Validation of point, box and mask prompts given in pixels of the original image."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InvalidInputError

LOW_RES_MASK_SIZE = 256


def _as_float_array(value: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"{name} must be numeric, got {type(value).__name__}") from err
    if array.size and not np.isfinite(array).all():
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    return array


def _check_inside(xy: np.ndarray, image_size: tuple[int, int], name: str) -> None:
    height, width = image_size
    outside = (xy[..., 0] < 0) | (xy[..., 0] > width) | (xy[..., 1] < 0) | (xy[..., 1] > height)
    if outside.any():
        first = xy[outside][0].tolist()
        raise InvalidInputError(
            f"{name} has coordinates outside the {width}x{height} image (x in [0, {width}], "
            f"y in [0, {height}]): {first}"
        )


def validate_points(
    point_coords: Any, point_labels: Any, image_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    """Checks point prompts.

    Args:
        point_coords: Nx2 (X, Y) pixels of the original image, or None.
        point_labels: N labels, 1 foreground and 0 background, or None.
        image_size: (H, W) of the original image.

    Returns:
        Nx2 float32 coordinates and N int64 labels, or (None, None) for no points.
    """
    if point_coords is None and point_labels is None:
        return None, None
    if point_coords is None:
        raise InvalidInputError("point_labels were given without point_coords")
    if point_labels is None:
        raise InvalidInputError("point_coords must be supplied with point_labels")
    coords = _as_float_array(point_coords, "point_coords")
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise InvalidInputError(f"point_coords must be Nx2 (X, Y), got shape {coords.shape}")
    if coords.shape[0] == 0:
        raise InvalidInputError("point_coords is empty; pass None for no points")
    labels = _as_float_array(point_labels, "point_labels")
    if labels.shape != (coords.shape[0],):
        raise InvalidInputError(
            f"point_labels must have one label per point ({coords.shape[0]}), got shape "
            f"{labels.shape}"
        )
    if not np.isin(labels, (0, 1)).all():
        raise InvalidInputError("point_labels must be 1 (foreground) or 0 (background)")
    _check_inside(coords, image_size, "point_coords")
    return coords.astype(np.float32), labels.astype(np.int64)


def validate_boxes(box: Any, image_size: tuple[int, int]) -> np.ndarray | None:
    """Checks box prompts.

    Args:
        box: One box as 4 numbers or Bx4 boxes, XYXY pixels of the original image, or None.
        image_size: (H, W) of the original image.

    Returns:
        Bx4 float32 boxes, or None.
    """
    if box is None:
        return None
    boxes = _as_float_array(box, "box")
    if boxes.ndim == 1:
        boxes = boxes[None, :]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InvalidInputError(f"box must be 4 numbers or Bx4 (x0, y0, x1, y1), got {boxes.shape}")
    if boxes.shape[0] == 0:
        raise InvalidInputError("box is empty; pass None for no box")
    inverted = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if inverted.any():
        index = int(np.flatnonzero(inverted)[0])
        raise InvalidInputError(
            f"box {index} {boxes[index].tolist()} is empty or inverted; "
            "expected x0 < x1 and y0 < y1"
        )
    _check_inside(boxes.reshape(-1, 2, 2), image_size, "box")
    return boxes.astype(np.float32)


def validate_mask_input(
    mask_input: Any, num_prompts: int, side: int = LOW_RES_MASK_SIZE
) -> np.ndarray | None:
    """Checks low-resolution mask logits from a previous prediction.

    Args:
        mask_input: 256x256, 1x256x256 or Bx1x256x256 logits (B = number of prompts), or None.
        num_prompts: Number of prompts the masks go with.
        side: The decoder's low-res mask side (256 for a 1024 input).

    Returns:
        Bx1x256x256 float32 logits (one shared mask is repeated), or None.
    """
    if mask_input is None:
        return None
    masks = _as_float_array(mask_input, "mask_input")
    if masks.shape == (side, side):
        masks = masks[None]
    if masks.ndim == 3 and masks.shape[0] == 1:
        masks = masks[None]
    if masks.ndim != 4 or masks.shape[1:] != (1, side, side):
        raise InvalidInputError(
            f"mask_input must be {side}x{side}, 1x{side}x{side} or Bx1x{side}x{side} logits, got "
            f"shape {masks.shape}"
        )
    if masks.shape[0] == 1:
        masks = np.repeat(masks, num_prompts, axis=0)
    if masks.shape[0] != num_prompts:
        raise InvalidInputError(f"mask_input has {masks.shape[0]} masks for {num_prompts} prompts")
    return masks.astype(np.float32)
