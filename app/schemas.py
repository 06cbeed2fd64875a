"""Request and response models of the HTTP API, with the examples shown at /docs."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from repvit_sam.amg_params import AmgParams
from repvit_sam.edge_params import EdgeParams
from repvit_sam.parameters import parameter_defaults, parameter_help

from .encoding import MaskFormat

ID_PATTERN = r"^[0-9a-f]{32}$"
EXAMPLE_ID = "3f2a9c0d41b7e6a8c5d2f1e0b9a87654"


def _at_most_setting(value: int, info: ValidationInfo) -> int:
    """Bounds ``value`` by the setting ``max_<field>`` passed in the validation context."""
    limit = (info.context or {}).get(f"max_{info.field_name}")
    if limit is not None and value > limit:
        setting = f"REPVIT_SAM_MAX_{str(info.field_name).upper()}"
        raise ValueError(f"{info.field_name} must be at most {limit} on this service ({setting})")
    return value


def _parameter(params: type, name: str, note: str = "", **bounds: Any) -> Any:
    """A request field with the library's default and help for ``name`` (``AmgParams`` or
    ``EdgeParams``: one source), within the service's ``bounds``."""
    help = parameter_help(params)[name]
    description = f"{help[0].upper()}{help[1:]}." + (f" {note}" if note else "")
    return Field(default=parameter_defaults(params)[name], description=description, **bounds)


PointsPerBatch = Annotated[
    StrictInt,
    Field(
        ge=1,
        validate_default=True,
        description="Prompts decoded together (at most max_points_per_batch).",
    ),
    AfterValidator(_at_most_setting),
]


class EmbeddingRequest(BaseModel):
    """What every body of ``/segment``, ``/masks`` and ``/edges`` has: the embedding to use.

    Unknown fields, NaN and infinities are refused; so are values of another JSON type than the
    schema's (``"16"``, ``true`` or ``16.0`` for an integer, ``"0.5"`` or ``true`` for a number),
    which pydantic would otherwise coerce.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    embedding_id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="From /embed. Leave out when uploading the image with the request.",
    )


class EmbedResponse(BaseModel):
    """The answer of ``POST /embed``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"embedding_id": EXAMPLE_ID, "width": 640, "height": 480, "cached": False}]
        }
    )

    embedding_id: str = Field(description="Derived from the decoded pixels and the model.")
    width: int
    height: int
    cached: bool = Field(description="True when no encoder call was made for this request.")


class SegmentRequest(EmbeddingRequest):
    """Prompts in pixels of the original image.

    Several boxes are several prompts, decoded in one batched call; points apply to every box,
    or form one prompt when there are no boxes.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "embedding_id": EXAMPLE_ID,
                    "points": [[320, 240], [100, 50]],
                    "labels": [1, 0],
                    "format": "rle",
                },
                {
                    "embedding_id": EXAMPLE_ID,
                    "boxes": [[10, 10, 200, 150], [300, 120, 620, 470]],
                    "multimask": True,
                    "format": "polygons",
                },
            ]
        },
    )

    points: list[tuple[StrictFloat, StrictFloat]] = Field(
        default_factory=list, description="XY pixels."
    )
    labels: list[Annotated[StrictInt, Field(ge=0, le=1)]] | None = Field(
        default=None, description="1 foreground, 0 background, one per point (default all 1)."
    )
    boxes: list[tuple[StrictFloat, StrictFloat, StrictFloat, StrictFloat]] = Field(
        default_factory=list, description="XYXY pixels; one prompt per box."
    )
    mask_input_id: str | None = Field(
        default=None, pattern=ID_PATTERN, description="A logits_id of an earlier answer."
    )
    mask_input_index: int | None = Field(
        default=None,
        ge=0,
        description="The candidate of mask_input_id's answer to refine, per prompt "
        "(default: its best-scored one).",
    )
    # Strict: "yes" or 1 is a mistake to name, not a truthy value to guess at.
    multimask: StrictBool = Field(default=False, description="3 candidate masks per prompt.")
    format: MaskFormat = "rle"

    @model_validator(mode="after")
    def _check_prompts(self, info: ValidationInfo) -> SegmentRequest:
        # The prompts' geometry is the library's to check (app/segmentation.py check_prompts).
        limits = info.context or {}
        if not self.points and not self.boxes:
            raise ValueError("empty prompt: give points, boxes or both")
        if self.mask_input_index is not None and self.mask_input_id is None:
            raise ValueError("mask_input_index needs mask_input_id: the answer it indexes")
        if len(self.points) > limits.get("max_points", math.inf):
            raise ValueError(f"points: at most {limits['max_points']} points per request")
        if len(self.boxes) > limits.get("max_boxes", math.inf):
            raise ValueError(f"boxes: at most {limits['max_boxes']} boxes per request")
        return self

    def point_labels(self) -> list[int]:
        return list(self.labels) if self.labels is not None else [1] * len(self.points)


class MaskResult(BaseModel):
    """One mask: candidate masks of prompt ``i`` follow each other, prompts in request order."""

    prompt: int = Field(description="Index of the box (0 with points only).")
    score: float = Field(description="The decoder's predicted IoU.")
    area: int = Field(description="Pixels in the mask.")
    bbox: list[int] = Field(description="[x, y, w, h] of the mask in pixels.")
    segmentation: Any = Field(
        description="COCO RLE {size: [h, w], counts: str}, a base64 PNG, or polygons "
        "[[x0, y0, x1, y1, ...], ...]."
    )


class SegmentResponse(BaseModel):
    """The answer of ``POST /segment``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "embedding_id": EXAMPLE_ID,
                    "width": 640,
                    "height": 480,
                    "masks": [
                        {
                            "prompt": 0,
                            "score": 0.97,
                            "area": 5012,
                            "bbox": [280, 200, 90, 70],
                            "segmentation": {"size": [480, 640], "counts": "Sf`61Y>1N2..."},
                        }
                    ],
                    "logits_id": "b1946ac92492d2347c6235b4d2611184",
                }
            ]
        }
    )

    embedding_id: str
    width: int
    height: int
    masks: list[MaskResult]
    logits_id: str = Field(description="Send back as mask_input_id to refine; GET /logits/{id}.")


class LogitsResponse(BaseModel):
    """The answer of ``POST /logits``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"logits_id": EXAMPLE_ID}]})

    logits_id: str


class MasksRequest(EmbeddingRequest):
    """``SamAutomaticMaskGenerator``'s parameters, same names and defaults, bounded.

    Masks always come back as COCO RLE (``output_mode`` may only be "coco_rle").
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"embedding_id": EXAMPLE_ID, "points_per_side": 32, "pred_iou_thresh": 0.88},
                {
                    "embedding_id": EXAMPLE_ID,
                    "points_per_side": 16,
                    "stability_score_thresh": 0.9,
                    "min_mask_region_area": 100,
                },
            ]
        },
    )

    points_per_side: StrictInt = _parameter(
        AmgParams, "points_per_side", "At most max_points_per_side.", ge=1, validate_default=True
    )
    points_per_batch: PointsPerBatch = parameter_defaults(AmgParams)["points_per_batch"]
    pred_iou_thresh: StrictFloat = _parameter(AmgParams, "pred_iou_thresh", ge=0, le=1)
    stability_score_thresh: StrictFloat = _parameter(
        AmgParams, "stability_score_thresh", ge=0, le=1
    )
    stability_score_offset: StrictFloat = _parameter(
        AmgParams, "stability_score_offset", gt=0, le=100
    )
    box_nms_thresh: StrictFloat = _parameter(AmgParams, "box_nms_thresh", ge=0, le=1)
    crop_n_layers: StrictInt = _parameter(
        AmgParams, "crop_n_layers", "Above 0 the image must be uploaded, not an id.", ge=0, le=2
    )
    crop_nms_thresh: StrictFloat = _parameter(AmgParams, "crop_nms_thresh", ge=0, le=1)
    crop_overlap_ratio: StrictFloat = _parameter(AmgParams, "crop_overlap_ratio", ge=0, lt=1)
    crop_n_points_downscale_factor: StrictInt = _parameter(
        AmgParams, "crop_n_points_downscale_factor", ge=1, le=64
    )
    min_mask_region_area: StrictInt = _parameter(AmgParams, "min_mask_region_area", ge=0)
    output_mode: Literal["coco_rle"] = Field(
        default="coco_rle", description="Only COCO RLE over HTTP."
    )

    _grid_limit = field_validator("points_per_side")(_at_most_setting)

    @field_validator("crop_n_points_downscale_factor")
    @classmethod
    def _crop_grids_keep_a_point(cls, value: int, info: ValidationInfo) -> int:
        points, layers = info.data.get("points_per_side"), info.data.get("crop_n_layers")
        if points is not None and layers is not None and int(points / value**layers) < 1:
            raise ValueError(
                f"leaves crop layer {layers} no point per side (points_per_side {points} / "
                f"{value}**{layers} < 1)"
            )
        return value

    def generator_params(self) -> dict[str, Any]:
        """The keyword arguments of ``repvit_sam.MaskGenerator``."""
        return self.model_dump(exclude={"embedding_id"})


class Rle(BaseModel):
    """COCO compressed RLE (pycocotools ``mask.decode`` reads it)."""

    size: list[int] = Field(description="[h, w]")
    counts: str


class AutoMask(BaseModel):
    """One record of ``SamAutomaticMaskGenerator.generate`` (XY pixels of the image)."""

    segmentation: Rle
    area: int
    bbox: list[int] = Field(description="[x, y, w, h] of the mask.")
    predicted_iou: float
    point_coords: list[list[float]] = Field(description="[[x, y]], the point prompt.")
    stability_score: float
    crop_box: list[int] = Field(description="[x, y, w, h] of the crop it was found in.")


class MasksResponse(BaseModel):
    """The answer of ``POST /masks``, masks in the generator's order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "embedding_id": EXAMPLE_ID,
                    "width": 640,
                    "height": 480,
                    "masks": [
                        {
                            "segmentation": {"size": [480, 640], "counts": "Sf`61Y>1N2..."},
                            "area": 5012,
                            "bbox": [280, 200, 90, 70],
                            "predicted_iou": 0.95,
                            "point_coords": [[310.0, 230.0]],
                            "stability_score": 0.97,
                            "crop_box": [0, 0, 640, 480],
                        }
                    ],
                }
            ]
        }
    )

    embedding_id: str
    width: int
    height: int
    masks: list[AutoMask]


EdgeFormat = Literal["png", "npy", "json"]


class EdgesRequest(EmbeddingRequest):
    """``repvit_sam.EdgeDetector``'s parameters (SAM's zero-shot edge protocol), bounded."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"embedding_id": EXAMPLE_ID},
                {"embedding_id": EXAMPLE_ID, "points_per_side": 16, "format": "npy"},
            ]
        },
    )

    # validate_default: the default, too, must be within this service's limit.
    points_per_side: StrictInt = _parameter(
        EdgeParams,
        "points_per_side",
        "At most max_edge_points_per_side.",
        ge=1,
        validate_default=True,
    )
    points_per_batch: PointsPerBatch = parameter_defaults(EdgeParams)["points_per_batch"]
    nms_thresh: StrictFloat = _parameter(EdgeParams, "nms_thresh", ge=0, le=1)
    boundary_width: StrictInt = _parameter(EdgeParams, "boundary_width", ge=1, le=16)
    format: EdgeFormat = Field(
        default="png",
        description='"png": 8-bit PNG; "npy": the float32 HxW map in [0, 1] as .npy; '
        '"json": EdgesResponse with that .npy base64-encoded.',
    )

    @field_validator("points_per_side")
    @classmethod
    def _grid_limit(cls, value: int, info: ValidationInfo) -> int:
        limit = (info.context or {}).get("max_edge_points_per_side")
        if limit is not None and value > limit:
            raise ValueError(
                f"points_per_side must be at most {limit} on this service "
                "(REPVIT_SAM_MAX_EDGE_POINTS_PER_SIDE)"
            )
        return value

    def detector_params(self) -> dict[str, Any]:
        """The keyword arguments of ``repvit_sam.EdgeDetector``."""
        return self.model_dump(exclude={"embedding_id", "format"})


class EdgesResponse(BaseModel):
    """The answer of ``POST /edges`` with ``format: "json"``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "embedding_id": EXAMPLE_ID,
                    "width": 640,
                    "height": 480,
                    "num_masks": 768,
                    "num_kept": 301,
                    "edges": "k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0Jywg...",
                }
            ]
        }
    )

    embedding_id: str
    width: int
    height: int
    num_masks: int = Field(description="Masks predicted (3 per grid point).")
    num_kept: int = Field(description="Masks left after NMS, whose edges form the map.")
    edges: str = Field(description="Base64 of a .npy file: HxW float32 in [0, 1].")


class Health(BaseModel):
    """Liveness."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok", "loading"]


class Readiness(Health):
    """Readiness: the model is loaded and warm; how the embedding cache stands."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok", "cache": "ok"}]})

    cache: Literal["local", "ok", "degraded"] = Field(
        description="local: no shared cache; ok: Redis answers; degraded: Redis is down, this "
        "replica answers from its own cache (other replicas' ids: 404) and reconnects."
    )


class ErrorResponse(BaseModel):
    """Every error: a 4xx status and what was wrong (a message or a list naming the fields)."""

    detail: str | list[dict[str, Any]]
