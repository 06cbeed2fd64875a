"""The ML backend routes Label Studio calls, under ``/label-studio`` (the URL a user enters in
the project's Model settings is ``http://HOST:PORT/label-studio``)."""

from __future__ import annotations

import asyncio
import logging
from typing import TypeVar

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from ...bodies import media_type, parse_body
from ...deps import ServiceDep, SettingsDep
from ...errors import PayloadTooLargeError, UnsupportedMediaTypeError
from ...settings import Settings
from ..common import adapter_route, require_adapter_key
from .config import parse_label_config
from .predict import MODEL_CLASS, model_version, predict
from .schemas import (
    ErrorResponse,
    HealthResponse,
    PredictRequest,
    PredictResponse,
    SetupRequest,
    SetupResponse,
    WebhookRequest,
    WebhookResponse,
)

logger = logging.getLogger(__name__)

BodyT = TypeVar("BodyT", bound=BaseModel)
# The events the SDK's server hands to training; it answers others 200 "Unknown event".
TRAIN_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED", "START_TRAINING")
_PARSE_INLINE_BYTES = 64 << 10


def error_body(status: int, message: str, request: Request) -> dict[str, object]:
    """The SDK server's error answer: ``{"status", "detail", "request"}`` (its query args)."""
    return ErrorResponse(
        status=status, detail=message, request=dict(request.query_params)
    ).model_dump()


router = APIRouter(
    prefix="/label-studio",
    tags=["label-studio"],
    route_class=adapter_route("label-studio", error_body),
    dependencies=[Depends(require_adapter_key)],
    responses={code: {"model": ErrorResponse} for code in (401, 413, 415, 422, 503, 504)},
)


async def read_json(request: Request, model: type[BodyT], settings: Settings) -> BodyT:
    """The body as ``model``, within ``max_json_bytes`` plus one image as a ``data:`` URL."""
    kind = media_type(request)
    if kind != "application/json":
        raise UnsupportedMediaTypeError(f"Content-Type must be application/json, got {kind!r}")
    raw = await request.body()
    limit = settings.max_json_bytes + settings.max_upload_bytes * 4 // 3 + 4
    if len(raw) > limit:
        raise PayloadTooLargeError(f"the JSON body is {len(raw)} bytes, over {limit}")
    if len(raw) <= _PARSE_INLINE_BYTES:
        return parse_body(model, raw, ("body",), {})
    return await asyncio.to_thread(parse_body, model, raw, ("body",), {})


@router.get("/", summary="Health, as Label Studio checks it", response_model=HealthResponse)
@router.get("/health", summary="Health, as Label Studio checks it", response_model=HealthResponse)
async def health(service: ServiceDep) -> HealthResponse:
    """``UP`` once the model is loaded (503 while it loads or after it failed)."""
    model_version(service)
    return HealthResponse(model_class=MODEL_CLASS)


@router.post("/setup", response_model=SetupResponse, summary="Connect a project")
async def setup(request: Request, service: ServiceDep, settings: SettingsDep) -> SetupResponse:
    """The model version; the project's labelling config (``schema``) must parse."""
    body = await read_json(request, SetupRequest, settings)
    if body.label_schema:
        await asyncio.to_thread(parse_label_config, body.label_schema)
    return SetupResponse(model_version=model_version(service))


@router.post("/webhook", status_code=201, response_model=WebhookResponse, summary="Events")
async def webhook(request: Request, response: Response, settings: SettingsDep) -> WebhookResponse:
    """Training events are accepted (201) and change nothing: this backend does not train.
    Others get 200 ``Unknown event``, as from the SDK's server."""
    body = await read_json(request, WebhookRequest, settings)
    if body.action not in TRAIN_EVENTS:
        response.status_code = 200
        return WebhookResponse(status="Unknown event")
    logger.debug("label-studio webhook %s: nothing to train", body.action)
    return WebhookResponse(status="ok", result={})


@router.post("/predict", response_model=PredictResponse, summary="Interactive SAM predictions")
async def predict_route(
    request: Request, service: ServiceDep, settings: SettingsDep
) -> PredictResponse:
    """The mask of the smart-tool regions in ``params.context`` on the task's image."""
    body = await read_json(request, PredictRequest, settings)
    return await predict(service, settings, body)
