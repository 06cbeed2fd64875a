"""X-AnyLabeling's remote-server protocol at ``/x-anylabeling``, over the one ``InferenceService``.

X-AnyLabeling's "Remote-Server" model (``anylabeling/services/auto_labeling/remote_server.py``)
talks to X-AnyLabeling-Server: ``GET /v1/models`` lists the models and the widgets to show,
``POST /v1/predict`` sends the whole image (a data URL) with the clicks as ``params.marks``
on every click, and gets annotation shapes back. This router answers the same calls as that
server's SAM model does: polygons traced from each prompt's mask (``cv2.findContours``,
external outlines) and simplified by ``cv2.approxPolyDP`` with ``epsilon_factor`` x the
outline's length, filtered and closed the same way. The image is decoded and found in the
shared embedding cache by its pixels, so only the first click on an image runs the encoder.

Errors are ``{"success": false, "error": {"code", "message"}}`` with the native routes' HTTP
status (X-AnyLabeling's client raises on a 4xx and shows the message). The API key, when the
service has one, is read from X-AnyLabeling's ``Token`` header or from ``X-API-Key``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from repvit_sam import InvalidImageError, InvalidInputError

from ..deps import ServiceDep, SettingsDep, api_key_matches
from ..errors import (
    NotFoundError,
    PayloadTooLargeError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from ..segmentation import check_output_size, draw_masks
from ..settings import Settings
from .protocol import ProtocolRoute, decode_image, openapi_answers, openapi_body, read_json

MODEL_ID = "repvit_sam"
LABEL = "AUTOLABEL_OBJECT"
# The widgets X-AnyLabeling shows for a SAM model (X-AnyLabeling-Server's segment_anything_2).
WIDGETS = [
    {"name": name, "value": value}
    for name, value in (
        ("button_add_point", None),
        ("button_remove_point", None),
        ("button_add_rect", None),
        ("button_clear", None),
        ("button_finish_object", None),
        ("mask_fineness_slider", 10),
        ("mask_fineness_value_label", None),
    )
]


class ModelNotFoundError(NotFoundError):
    """``model`` names no model of this service."""


# Requests ----------------------------------------------------------------------------------------


class Mark(BaseModel):
    """One click or box of X-AnyLabeling's canvas, in pixels of the image."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    type: Literal["point", "rectangle"]
    data: list[float] = Field(description="[x, y] for a point, [x1, y1, x2, y2] for a rectangle.")
    label: Literal[0, 1] = Field(default=1, description="Points: 1 foreground, 0 background.")

    @model_validator(mode="after")
    def _check_data(self) -> Mark:
        expected = 2 if self.type == "point" else 4
        if len(self.data) != expected:
            raise ValueError(f"a {self.type} has {expected} numbers in data, got {len(self.data)}")
        if self.type == "rectangle":
            x1, y1, x2, y2 = self.data
            # Drawn from any corner: the box is the same.
            self.data = [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]
            if self.data[0] == self.data[2] or self.data[1] == self.data[3]:
                raise ValueError(f"the rectangle {[x1, y1, x2, y2]} has no area")
        return self


class PredictParams(BaseModel):
    """``params`` of a predict call; the client's other keys (thresholds, task) are ignored."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    marks: list[Mark] = Field(default_factory=list)
    multimask_output: StrictBool = Field(
        default=False, description="Three candidates per prompt, the best scored kept."
    )
    epsilon_factor: float = Field(
        default=0.001, ge=0, le=1, description="approxPolyDP tolerance / outline length."
    )
    show_masks: StrictBool = True
    show_boxes: StrictBool = False
    image_id: str | None = Field(
        default=None, description="Accepted and unused: embeddings are found by the pixels."
    )


class PredictRequest(BaseModel):
    """The body of ``POST /v1/predict``."""

    model_config = ConfigDict(extra="ignore")

    model: str
    image: str = Field(description="Base64 or a data URL of the encoded image.")
    params: PredictParams = Field(default_factory=PredictParams)


# Responses ---------------------------------------------------------------------------------------


def success(data: Any) -> JSONResponse:
    return JSONResponse({"success": True, "data": data})


def error_code(err: Exception) -> str:
    """X-AnyLabeling-Server's code for an error (its own where it has one)."""
    codes: list[tuple[type[Exception], str]] = [
        (UnauthorizedError, "UNAUTHORIZED"),
        (ModelNotFoundError, "MODEL_NOT_FOUND"),
        (InvalidImageError, "INVALID_IMAGE"),
        (PayloadTooLargeError, "PAYLOAD_TOO_LARGE"),
        (UnsupportedMediaTypeError, "UNSUPPORTED_MEDIA_TYPE"),
        (RequestValidationError, "INVALID_REQUEST"),
        (InvalidInputError, "INVALID_REQUEST"),
    ]
    for kind, code in codes:
        if isinstance(err, kind):
            return code
    return "INFERENCE_ERROR"


class XAnyLabelingRoute(ProtocolRoute):
    @staticmethod
    def error_response(
        status: int, message: str, err: Exception, headers: dict[str, str]
    ) -> Response:
        code = error_code(err)
        if code == "INFERENCE_ERROR" and status in (503, 504):
            code = "SERVICE_UNAVAILABLE" if status == 503 else "TIMEOUT"
        body = {"success": False, "error": {"code": code, "message": message}}
        return JSONResponse(body, status_code=status, headers=headers)


def require_token(
    settings: SettingsDep,
    token: Annotated[str | None, Header(alias="Token")] = None,
    api_key: Annotated[str | None, Header(alias="X-API-Key")] = None,
) -> None:
    """The service's API key in X-AnyLabeling's ``Token`` header (or ``X-API-Key``)."""
    supplied = (key for key in (token, api_key) if key)
    if settings.api_key is not None and not any(api_key_matches(settings, k) for k in supplied):
        raise UnauthorizedError("Invalid or missing API Key (send it in the Token header)")


_ERROR = {"success": False, "error": {"code": "MODEL_NOT_FOUND", "message": "Model 'x' not loaded"}}
_SHAPE = {"label": LABEL, "shape_type": "polygon", "points": [[10.0, 10.0], [60.0, 12.0],
          [40.0, 50.0], [10.0, 10.0]], "score": 0.93, "attributes": {}}  # fmt: skip
_PREDICT_BODY = {
    "model": MODEL_ID,
    "image": "data:image/png;base64,iVBORw0KGgo...",
    "params": {"marks": [{"type": "point", "data": [320, 240], "label": 1},
                         {"type": "rectangle", "data": [100, 80, 400, 360]}],
               "epsilon_factor": 0.001, "multimask_output": False},
}  # fmt: skip

router = APIRouter(prefix="/x-anylabeling", tags=["x-anylabeling"], route_class=XAnyLabelingRoute)
secured = [Depends(require_token)]


def model_info(settings: Settings) -> dict[str, Any]:
    """What X-AnyLabeling-Server's ``get_metadata`` gives for a SAM model."""
    return {
        "display_name": f"RepViT-SAM ({settings.variant})",
        "widgets": WIDGETS,
        "params": PredictParams().model_dump(exclude={"marks", "image_id"}),
        "capabilities": {},
        "batch_processing_mode": "default",
    }


@router.get(
    "/health",
    summary="X-AnyLabeling-Server's health check",
    responses=openapi_answers(
        {"status": "healthy", "models_loaded": 1, "timestamp": "2026-01-01T12:00:00Z"}, _ERROR
    ),
)
async def health(service: ServiceDep) -> JSONResponse:
    """``{"status": "healthy", "models_loaded": 1, "timestamp": ...}``; no API key needed."""
    service.check_loaded()
    stamp = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    status = "healthy" if service.ready else "loading"
    return JSONResponse({"status": status, "models_loaded": int(service.ready), "timestamp": stamp})


@router.get(
    "/v1/models",
    dependencies=secured,
    summary="The models X-AnyLabeling can pick",
    responses=openapi_answers(
        {"success": True, "data": {MODEL_ID: {"display_name": "..."}}}, _ERROR
    ),
)
async def models(settings: SettingsDep) -> JSONResponse:
    return success({MODEL_ID: model_info(settings)})


@router.get(
    "/v1/models/{model_id}/info",
    dependencies=secured,
    summary="One model's metadata",
    responses=openapi_answers({"success": True, "data": {"model_id": MODEL_ID}}, _ERROR),
)
async def info(model_id: str, settings: SettingsDep) -> JSONResponse:
    check_model(model_id)
    return success({"model_id": model_id, **model_info(settings)})


def check_model(model_id: str) -> None:
    if model_id != MODEL_ID:
        raise ModelNotFoundError(f"Model '{model_id}' not loaded (this service has '{MODEL_ID}')")


@router.post(
    "/v1/predict",
    dependencies=secured,
    summary="Shapes for X-AnyLabeling's marks",
    openapi_extra=openapi_body(_PREDICT_BODY, "X-AnyLabeling's predict request."),
    responses=openapi_answers(
        {"success": True, "data": {"shapes": [_SHAPE], "description": "", "replace": False}},
        _ERROR,
    ),
)
async def predict(request: Request, service: ServiceDep, settings: SettingsDep) -> JSONResponse:
    """Polygons (and, with ``show_boxes``, rectangles) of the mask of each prompt: the points,
    applied to each rectangle, or alone without one."""
    body = await read_json(request, PredictRequest, settings)
    check_model(body.model)
    params = body.params
    pixels = await decode_image(service, settings, body.image, "image")
    points, labels, boxes = prompts(params, pixels.shape[1], pixels.shape[0], settings)
    if not points and not boxes:
        return success({"shapes": [], "description": "", "replace": False})
    num_prompts = max(len(boxes), 1)
    candidates = 3 if params.multimask_output else 1
    check_output_size(num_prompts * candidates, pixels.shape[1], pixels.shape[0], settings)
    _, embedding, _ = await service.embed(pixels)
    decoded = await service.decode(
        embedding,
        np.asarray(points, np.float32) if points else None,
        np.asarray(labels, np.int64) if points else None,
        np.asarray(boxes, np.float32) if boxes else None,
        None,
        params.multimask_output,
    )
    drawn = draw_masks(service, decoded)  # a generator: drawn in the worker thread
    shapes = await asyncio.to_thread(prompt_shapes, drawn, decoded.scores, params, settings)
    return success({"shapes": shapes, "description": "", "replace": False})


def prompts(
    params: PredictParams, width: int, height: int, settings: Settings
) -> tuple[list[list[float]], list[int], list[list[float]]]:
    """Points, their labels and boxes of the marks, checked against the image and the limits."""
    points, labels, boxes = [], [], []
    for index, mark in enumerate(params.marks):
        xs, ys = mark.data[0::2], mark.data[1::2]
        if min(xs) < 0 or max(xs) > width or min(ys) < 0 or max(ys) > height:
            raise InvalidInputError(
                f"params.marks[{index}] {mark.data} is outside the {width}x{height} image"
            )
        if mark.type == "point":
            points.append(mark.data)
            labels.append(mark.label)
        else:
            boxes.append(mark.data)
    if len(points) > settings.max_points:
        raise InvalidInputError(f"params.marks: at most {settings.max_points} points")
    if len(boxes) > settings.max_boxes:
        raise InvalidInputError(f"params.marks: at most {settings.max_boxes} rectangles")
    return points, labels, boxes


def prompt_shapes(
    drawn: Iterator[np.ndarray], scores: np.ndarray, params: PredictParams, settings: Settings
) -> list[dict[str, Any]]:
    """The shapes of each prompt's best candidate mask, within ``max_polygon_points``."""
    shapes: list[dict[str, Any]] = []
    vertices = 0
    for masks, prompt_scores in zip(drawn, scores, strict=True):
        best = int(np.argmax(prompt_scores)) if params.multimask_output else 0
        # X-AnyLabeling keeps a score within [0, 1]; the predicted IoU can stray outside.
        score = min(max(float(prompt_scores[best]), 0.0), 1.0)
        outlines = mask_outlines(masks[best], params.epsilon_factor)
        vertices += sum(len(outline) for outline in outlines)
        if vertices > settings.max_polygon_points:
            raise PayloadTooLargeError(
                f"the outlines have over {settings.max_polygon_points} vertices "
                "(MAX_POLYGON_POINTS); raise epsilon_factor"
            )
        shapes.extend(outline_shapes(outlines, score, params))
    return shapes


def mask_outlines(mask: np.ndarray, epsilon_factor: float) -> list[np.ndarray]:
    """The mask's external outlines as Nx2 integer pixel arrays, as X-AnyLabeling-Server draws
    them: Douglas-Peucker at ``epsilon_factor`` x each outline's length; with several, those
    covering 90% of the image or more (background) and those under a fifth of the mean area
    (specks) are dropped, unless that would drop them all."""
    import cv2  # only polygons need OpenCV

    contours, _ = cv2.findContours(
        np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    outlines = [
        cv2.approxPolyDP(contour, epsilon_factor * cv2.arcLength(contour, True), True)
        for contour in contours
    ]
    if len(outlines) > 1:
        image_area = mask.shape[0] * mask.shape[1]
        kept = [c for c in outlines if cv2.contourArea(c) < image_area * 0.9]
        outlines = kept or outlines
    if len(outlines) > 1:
        areas = [cv2.contourArea(c) for c in outlines]
        floor = float(np.mean(areas)) * 0.2
        kept = [c for c, area in zip(outlines, areas, strict=True) if area > floor]
        outlines = kept or outlines
    return [outline.reshape(-1, 2) for outline in outlines]


def outline_shapes(
    outlines: list[np.ndarray], score: float, params: PredictParams
) -> list[dict[str, Any]]:
    """X-AnyLabeling shapes: a closed polygon per outline of 3 or more vertices, and with
    ``show_boxes`` the rectangle around them all (corners clockwise from the top left)."""
    shapes = []
    if params.show_masks:
        for outline in outlines:
            points = outline.astype(float).tolist()
            if len(points) < 3:
                continue
            if points[0] != points[-1]:
                points.append(points[0])
            shapes.append(shape("polygon", points, score))
    if params.show_boxes and outlines:
        every = np.concatenate(outlines).astype(float)
        (x0, y0), (x1, y1) = every.min(axis=0), every.max(axis=0)
        if x0 < x1 and y0 < y1:
            corners = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
            shapes.append(shape("rectangle", [[float(x), float(y)] for x, y in corners], score))
    return shapes


def shape(shape_type: str, points: list[list[float]], score: float) -> dict[str, Any]:
    """Every field of X-AnyLabeling-Server's ``Shape``, as it serialises one."""
    return {
        "label": LABEL,
        "shape_type": shape_type,
        "points": points,
        "score": score,
        "attributes": {},
        "description": None,
        "difficult": False,
        "direction": 0,
        "flags": None,
        "group_id": None,
        "kie_linking": [],
    }
