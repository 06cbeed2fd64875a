"""Validation of point, box and mask prompts given in pixels of the original image."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class PromptNames:
    """What a caller calls each prompt argument, for the errors to name it: SamPredictor's
    arguments by default; the HTTP service passes its JSON fields (``points``, ``boxes``)."""

    points: str = "point_coords"
    labels: str = "point_labels"
    boxes: str = "box"
    mask_input: str = "mask_input"


SAM_NAMES = PromptNames()


def _check_inside(rows: np.ndarray, image_size: tuple[int, int], name: str) -> None:
    """Every row (N x 2k: k XY points) lies in [0, W] x [0, H]; else names the first that does
    not, as ``name[i]``."""
    height, width = image_size
    xs, ys = rows[:, 0::2], rows[:, 1::2]
    outside = ((xs < 0) | (xs > width) | (ys < 0) | (ys > height)).any(axis=1)
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        raise InvalidInputError(
            f"{name}[{index}] {rows[index].tolist()} is outside the {width}x{height} image "
            f"(x in [0, {width}], y in [0, {height}])"
        )


def validate_points(
    point_coords: Any,
    point_labels: Any,
    image_size: tuple[int, int],
    names: PromptNames = SAM_NAMES,
) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    """Checks point prompts.

    Args:
        point_coords: Nx2 (X, Y) pixels of the original image, or None.
        point_labels: N labels, 1 foreground and 0 background, or None.
        image_size: (H, W) of the original image.
        names: What the errors call the arguments.

    Returns:
        Nx2 float32 coordinates and N int64 labels, or (None, None) for no points.
    """
    points, labels_name = names.points, names.labels
    if point_coords is None and point_labels is None:
        return None, None
    if point_coords is None:
        raise InvalidInputError(f"{labels_name} were given without {points}")
    if point_labels is None:
        raise InvalidInputError(f"{points} must be supplied with {labels_name}")
    coords = _as_float_array(point_coords, points)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise InvalidInputError(f"{points} must be Nx2 (X, Y), got shape {coords.shape}")
    if coords.shape[0] == 0:
        raise InvalidInputError(f"{points} is empty; pass None for no points")
    labels = _as_float_array(point_labels, labels_name)
    if labels.shape != (coords.shape[0],):
        raise InvalidInputError(
            f"{labels_name} must have one label per point ({coords.shape[0]}), got shape "
            f"{labels.shape}"
        )
    if not np.isin(labels, (0, 1)).all():
        raise InvalidInputError(f"{labels_name} must be 1 (foreground) or 0 (background)")
    _check_inside(coords, image_size, points)
    return coords.astype(np.float32), labels.astype(np.int64)


def validate_boxes(
    box: Any, image_size: tuple[int, int], names: PromptNames = SAM_NAMES
) -> np.ndarray | None:
    """Checks box prompts.

    Args:
        box: One box as 4 numbers or Bx4 boxes, XYXY pixels of the original image, or None.
        image_size: (H, W) of the original image.
        names: What the errors call the arguments.

    Returns:
        Bx4 float32 boxes, or None.
    """
    if box is None:
        return None
    name = names.boxes
    boxes = _as_float_array(box, name)
    if boxes.ndim == 1:
        boxes = boxes[None, :]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InvalidInputError(
            f"{name} must be 4 numbers or Bx4 (x0, y0, x1, y1), got {boxes.shape}"
        )
    if boxes.shape[0] == 0:
        raise InvalidInputError(f"{name} is empty; pass None for no box")
    inverted = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if inverted.any():
        index = int(np.flatnonzero(inverted)[0])
        raise InvalidInputError(
            f"{name}[{index}] {boxes[index].tolist()} is empty or inverted; "
            "expected x0 < x1 and y0 < y1"
        )
    _check_inside(boxes, image_size, name)
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
