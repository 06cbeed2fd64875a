"""Request and response models of the HTTP API, with the examples shown at /docs."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from .encoding import MaskFormat

ID_PATTERN = r"^[0-9a-f]{32}$"
EXAMPLE_ID = "3f2a9c0d41b7e6a8c5d2f1e0b9a87654"


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


class SegmentRequest(BaseModel):
    """Prompts in pixels of the original image.

    Several boxes are several prompts, decoded in one batched call; points apply to every box,
    or form one prompt when there are no boxes.
    """

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
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

    embedding_id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="From /embed. Leave out when uploading the image with the request.",
    )
    points: list[tuple[float, float]] = Field(default_factory=list, description="XY pixels.")
    labels: list[Literal[0, 1]] | None = Field(
        default=None, description="1 foreground, 0 background, one per point (default all 1)."
    )
    boxes: list[tuple[float, float, float, float]] = Field(
        default_factory=list, description="XYXY pixels; one prompt per box."
    )
    mask_input_id: str | None = Field(
        default=None, pattern=ID_PATTERN, description="A logits_id of an earlier answer."
    )
    multimask: bool = Field(default=False, description="3 candidate masks per prompt.")
    format: MaskFormat = "rle"

    @model_validator(mode="after")
    def _check_prompts(self, info: ValidationInfo) -> SegmentRequest:
        limits = info.context or {}
        if not self.points and not self.boxes:
            raise ValueError("empty prompt: give points, boxes or both")
        if self.labels is not None and len(self.labels) != len(self.points):
            raise ValueError(
                f"labels must have one label per point: {len(self.labels)} labels for "
                f"{len(self.points)} points"
            )
        if len(self.points) > limits.get("max_points", math.inf):
            raise ValueError(f"points: at most {limits['max_points']} points per request")
        if len(self.boxes) > limits.get("max_boxes", math.inf):
            raise ValueError(f"boxes: at most {limits['max_boxes']} boxes per request")
        for index, (x0, y0, x1, y1) in enumerate(self.boxes):
            if not (x0 < x1 and y0 < y1):
                raise ValueError(
                    f"boxes[{index}] {[x0, y0, x1, y1]} is empty or inverted; "
                    "expected x0 < x1 and y0 < y1"
                )
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


class Health(BaseModel):
    """Liveness and readiness."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok", "loading"]


class ErrorResponse(BaseModel):
    """Every error: a 4xx status and what was wrong (a message or a list naming the fields)."""

    detail: str | list[dict[str, Any]]


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for these error statuses, with examples."""
    examples = {
        401: "missing or wrong X-API-Key header",
        404: "embedding_id '3f2a…' is unknown or was evicted; POST the image to /embed again",
        413: "image is 20000x20000 = 400000000 pixels, more than the limit 50000000",
        422: [{"loc": ["body", "labels"], "msg": "labels must have one label per point"}],
        503: "the model queue is full (64 calls); retry later",
    }
    return {
        status: {
            "model": ErrorResponse,
            "content": {"application/json": {"example": {"detail": examples[status]}}},
        }
        for status in statuses
    }
