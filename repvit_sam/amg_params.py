"""The parameters of automatic mask generation, validated with errors that name them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InvalidInputError
from .parameters import is_int, is_number, param, require

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


def _deepest_grid_side(points_per_side: int, factor: int, layers: int) -> int:
    """segment-anything's int(points_per_side / factor**layers), in Python ints (numpy's wrap
    around, and floats overflow) and without computing a huge power."""
    side = int(points_per_side)
    for _ in range(int(layers) if factor > 1 else 0):
        side //= int(factor)
        if side == 0:
            break
    return side


@dataclass(frozen=True)
class AmgParams:
    """``SamAutomaticMaskGenerator``'s parameters, defaults and meaning.

    Attributes:
        points_per_side: Grid points per image side (points_per_side**2 prompts); None when
            ``point_grids`` is given.
        points_per_batch: Prompts decoded together.
        pred_iou_thresh: Keep masks whose predicted IoU is above this (0 disables).
        stability_score_thresh: Keep masks whose stability score is at least this (0 disables).
        stability_score_offset: Logit offset of the stability score's two thresholds.
        box_nms_thresh: Box IoU above which duplicates within a crop are removed.
        crop_n_layers: Extra layers of image crops (layer i has (2**i)**2 crops).
        crop_nms_thresh: Box IoU above which duplicates between crops are removed.
        crop_overlap_ratio: Overlap of neighbouring crops, as a fraction of the short side.
        crop_n_points_downscale_factor: Points per side shrink by this factor per crop layer.
        point_grids: One Nx2 grid in [0, 1] (XY, normalised) per crop layer.
        min_mask_region_area: Remove holes and islands smaller than this many pixels (0 off).
        output_mode: "binary_mask", "uncompressed_rle" or "coco_rle".
        upsample_batch: Prompts whose masks are upscaled and resized at once (memory bound).
    """

    points_per_side: int | None = param(32, "grid points per image side")
    points_per_batch: int = param(64, "prompts decoded together")
    pred_iou_thresh: float = param(0.88, "keep masks whose predicted IoU is above this; 0 disables")
    stability_score_thresh: float = param(0.95, "keep masks at least this stable; 0 disables")
    stability_score_offset: float = param(1.0, "logit offset of the stability score")
    box_nms_thresh: float = param(0.7, "box IoU above which duplicates in a crop are removed")
    crop_n_layers: int = param(0, "extra layers of image crops")
    crop_nms_thresh: float = param(0.7, "box IoU above which duplicates between crops go")
    crop_overlap_ratio: float = param(512 / 1500, "overlap of neighbouring crops")
    crop_n_points_downscale_factor: int = param(1, "point grid shrink per crop layer")
    point_grids: list[np.ndarray] | None = param(None, "one Nx2 grid in [0, 1] per crop layer")
    min_mask_region_area: int = param(0, "remove holes and islands smaller than this (pixels)")
    output_mode: str = param("binary_mask", "binary_mask, uncompressed_rle or coco_rle")
    upsample_batch: int = param(16, "prompts whose masks are upscaled at once (memory)")

    def __post_init__(self) -> None:
        if (self.points_per_side is None) == (self.point_grids is None):
            raise InvalidInputError(
                "exactly one of points_per_side and point_grids must be given "
                f"(points_per_side={self.points_per_side!r}, point_grids="
                f"{'None' if self.point_grids is None else 'a list'})"
            )
        if self.points_per_side is not None:
            require(
                is_int(self.points_per_side) and self.points_per_side >= 1,
                "points_per_side",
                "a positive integer",
                self.points_per_side,
            )
        for name in ("points_per_batch", "crop_n_points_downscale_factor", "upsample_batch"):
            value = getattr(self, name)
            require(is_int(value) and value >= 1, name, "a positive integer", value)
        for name in ("crop_n_layers", "min_mask_region_area"):
            value = getattr(self, name)
            require(is_int(value) and value >= 0, name, "an integer >= 0", value)
        if self.points_per_side is not None:
            require(
                _deepest_grid_side(
                    self.points_per_side, self.crop_n_points_downscale_factor, self.crop_n_layers
                )
                >= 1,
                "crop_n_points_downscale_factor",
                f"small enough to leave crop layer {self.crop_n_layers} at least one point per "
                f"side (points_per_side {self.points_per_side} / factor**{self.crop_n_layers})",
                self.crop_n_points_downscale_factor,
            )
        for name in (
            "pred_iou_thresh",
            "stability_score_thresh",
            "box_nms_thresh",
            "crop_nms_thresh",
        ):
            value = getattr(self, name)
            require(is_number(value) and 0 <= value <= 1, name, "a number in [0, 1]", value)
        require(
            is_number(self.stability_score_offset) and self.stability_score_offset > 0,
            "stability_score_offset",
            "a positive number",
            self.stability_score_offset,
        )
        require(
            is_number(self.crop_overlap_ratio) and 0 <= self.crop_overlap_ratio < 1,
            "crop_overlap_ratio",
            "a number in [0, 1)",
            self.crop_overlap_ratio,
        )
        require(
            self.output_mode in OUTPUT_MODES,
            "output_mode",
            f"one of {', '.join(OUTPUT_MODES)}",
            self.output_mode,
        )
        if self.output_mode == "coco_rle":
            try:
                import pycocotools  # noqa: F401
            except ImportError as err:
                raise InvalidInputError(
                    "output_mode 'coco_rle' needs pycocotools: pip install pycocotools"
                ) from err
        if self.point_grids is not None:
            self._check_grids()

    def _check_grids(self) -> None:
        grids = self.point_grids
        require(
            isinstance(grids, (list, tuple)) and len(grids) == self.crop_n_layers + 1,
            "point_grids",
            f"a list of crop_n_layers + 1 = {self.crop_n_layers + 1} Nx2 arrays",
            type(grids).__name__,
        )
        for index, grid in enumerate(grids):
            array = np.asarray(grid)
            require(
                array.ndim == 2
                and array.shape[1] == 2
                and len(array) > 0
                and bool(np.all((array >= 0) & (array <= 1))),
                f"point_grids[{index}]",
                "a non-empty Nx2 array of XY points normalised to [0, 1]",
                getattr(array, "shape", array),
            )
