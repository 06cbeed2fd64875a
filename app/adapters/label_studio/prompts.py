"""SAM prompts from the regions Label Studio sends as ``context.result``.

Clicks (``keypointlabels``) are points, positive unless ``is_positive`` is false; a box
(``rectanglelabels``) is one box, the last one drawn when there are several (as in the SDK's SAM
examples). Coordinates are percents of ``original_width`` / ``original_height``, a rectangle's
``x``/``y`` its top-left corner, rotated by ``rotation`` degrees (clockwise) about it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from repvit_sam import InvalidInputError

from .schemas import ContextItem

PROMPT_TYPES = ("keypointlabels", "rectanglelabels")


@dataclass(frozen=True)
class Prompt:
    """The prompts of one interaction, in XY pixels of the original image.

    Attributes:
        points: N [x, y] clicks.
        labels: N labels, 1 foreground and 0 background.
        box: [x0, y0, x1, y1], or None.
        label: The label the labeller picked (the region's label), or None.
        image: The Image tag clicked (``to_name``), or None where the regions do not say.
        width: ``original_width`` of the image the regions were drawn on.
        height: ``original_height`` of it.
    """

    points: list[list[float]]
    labels: list[int]
    box: list[float] | None
    label: str | None
    image: str | None
    width: int
    height: int


def context_prompt(items: list[ContextItem], max_points: int) -> Prompt:
    """The prompt of ``context.result`` (non-empty); errors name the item at fault."""
    first = items[0]
    points: list[list[float]] = []
    labels: list[int] = []
    box = label = None
    for i, item in enumerate(items):
        field = f"params.context.result[{i}]"
        if item.type not in PROMPT_TYPES:
            raise InvalidInputError(
                f"{field}.type {item.type!r} is not a SAM prompt: use KeyPointLabels or "
                'RectangleLabels tags with smart="true"'
            )
        if (item.original_width, item.original_height, item.to_name) != (
            first.original_width, first.original_height, first.to_name
        ):  # fmt: skip
            raise InvalidInputError(
                f"{field} is on another image than params.context.result[0] (to_name, "
                "original_width, original_height differ)"
            )
        x, y = (_percent(item.value, key, f"{field}.value") for key in ("x", "y"))
        width, height = item.original_width, item.original_height
        if item.type == "keypointlabels":
            points.append([x * width / 100, y * height / 100])
            labels.append(int(item.is_positive))
        else:
            box = _box(item.value, x, y, width, height, f"{field}.value")
        label = _label(item.value, item.type) or label
    if len(points) > max_points:
        raise InvalidInputError(
            f"params.context.result has {len(points)} clicks, over max_points={max_points}"
        )
    return Prompt(
        points=points,
        labels=labels,
        box=box,
        label=label,
        image=first.to_name,
        width=first.original_width,
        height=first.original_height,
    )


def _percent(value: dict[str, Any], key: str, field: str) -> float:
    number = value.get(key)
    if (
        isinstance(number, bool)
        or not isinstance(number, (int, float))
        or not math.isfinite(number)
    ):
        raise InvalidInputError(f"{field}.{key} must be a number (a percent of the image)")
    if not -1e-6 <= number <= 100 + 1e-6:
        raise InvalidInputError(f"{field}.{key} {number} is outside the image (0 to 100 percent)")
    return float(min(max(number, 0.0), 100.0))


def _box(
    value: dict[str, Any], x: float, y: float, width: int, height: int, field: str
) -> list[float]:
    """The XYXY pixel box around a rectangle (its corners' extent when rotated)."""
    w, h = (_percent(value, key, field) for key in ("width", "height"))
    rotation = value.get("rotation", 0) or 0
    if isinstance(rotation, bool) or not isinstance(rotation, (int, float)):
        raise InvalidInputError(f"{field}.rotation must be a number of degrees")
    x0, y0, dx, dy = x * width / 100, y * height / 100, w * width / 100, h * height / 100
    cos, sin = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    xs = [x0 + cx * cos - cy * sin for cx, cy in ((0, 0), (dx, 0), (dx, dy), (0, dy))]
    ys = [y0 + cx * sin + cy * cos for cx, cy in ((0, 0), (dx, 0), (dx, dy), (0, dy))]
    return [
        max(min(xs), 0.0), max(min(ys), 0.0), min(max(xs), width), min(max(ys), height)
    ]  # fmt: skip


def _label(value: dict[str, Any], kind: str) -> str | None:
    labels = value.get(kind) or value.get("labels") or []
    return str(labels[0]) if isinstance(labels, list) and labels else None
