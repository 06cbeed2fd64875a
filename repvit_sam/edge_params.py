"""The parameters of SAM's zero-shot edge detection, validated with errors that name them."""

from __future__ import annotations

from dataclasses import dataclass

from .parameters import is_int, is_number, param, require


@dataclass(frozen=True)
class EdgeParams:
    """``EdgeDetector``'s parameters, defaults (the paper's protocol) and meaning.

    Attributes:
        points_per_side: Grid of foreground point prompts (16 in the paper).
        points_per_batch: Prompts decoded together.
        nms_thresh: Box IoU above which duplicate masks are removed (0.7 in the paper).
        boundary_width: Pixels of a mask's boundary that respond (see ``EdgeAccumulator``).
    """

    points_per_side: int = param(16, "grid points per image side")
    points_per_batch: int = param(64, "prompts decoded together")
    nms_thresh: float = param(0.7, "box IoU above which duplicate masks are removed")
    boundary_width: int = param(1, "pixels of each mask's boundary that respond")

    def __post_init__(self) -> None:
        for name in ("points_per_side", "points_per_batch", "boundary_width"):
            value = getattr(self, name)
            require(is_int(value) and value >= 1, name, "a positive integer", value)
        require(
            is_number(self.nms_thresh) and 0 <= self.nms_thresh <= 1,
            "nms_thresh",
            "a number in [0, 1]",
            self.nms_thresh,
        )
