"""Request bodies that are JSON against an ``embedding_id``, or multipart with the image itself.

``/segment``, ``/masks`` and ``/edges`` take either a JSON body naming an embedding from
/embed, or a multipart form with the ``image`` and the same JSON (without ``embedding_id``) in
its ``request`` field (one-shot use).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from repvit_sam import ImageEmbedding

from .deps import read_image
from .errors import PayloadTooLargeError, UnsupportedMediaTypeError
from .inference import InferenceService
from .openapi import COMPONENTS
from .settings import Settings

BodyT = TypeVar("BodyT", bound=BaseModel)
# Larger JSON is parsed on a worker thread: a megabyte of points takes the loop ~100 ms.
_PARSE_INLINE_BYTES = 64 << 10


def request_body(model: type[BaseModel], form: type[BaseModel]) -> dict[str, Any]:
    """The ``openapi_extra`` of a route that reads ``model`` with ``read_body``: JSON, or the
    one-shot multipart ``form`` (``openapi.name_request_bodies`` names both schemas)."""
    refs = COMPONENTS + "{model}"
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": model.model_json_schema(ref_template=refs)},
                "multipart/form-data": {
                    "schema": form.model_json_schema(ref_template=refs),
                    "encoding": {"request": {"contentType": "application/json"}},
                },
            },
        }
    }


def parse_body(
    model: type[BodyT], raw: str | bytes, loc: tuple[str, ...], context: Mapping[str, Any]
) -> BodyT:
    """Validates JSON ``raw`` as ``model``; errors become 422s located under ``loc``."""
    try:
        return model.model_validate_json(raw, context=dict(context))
    except ValidationError as err:
        errors = err.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError([{**e, "loc": (*loc, *e["loc"])} for e in errors]) from None


async def parse_json(
    model: type[BodyT],
    raw: str | bytes,
    loc: tuple[str, ...],
    context: Mapping[str, Any],
    settings: Settings,
) -> BodyT:
    """``parse_body`` within ``max_json_bytes``, large bodies off the event loop."""
    if len(raw) > settings.max_json_bytes:
        raise PayloadTooLargeError(
            f"the JSON {'/'.join(loc)} is {len(raw)} bytes, over max_json_bytes="
            f"{settings.max_json_bytes}"
        )
    if len(raw) <= _PARSE_INLINE_BYTES:
        return parse_body(model, raw, loc, context)
    return await asyncio.to_thread(parse_body, model, raw, loc, context)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(
    request: Request, model: type[BodyT], settings: Settings, context: Mapping[str, Any]
) -> tuple[BodyT, np.ndarray | None]:
    """The validated body and, for a multipart request, the decoded HxWx3 uint8 image.

    Raises:
        UnsupportedMediaTypeError: Neither ``application/json`` nor ``multipart/form-data``
            (a form a web page could post cross-site without a preflight is refused).
    """
    kind = media_type(request)
    if kind == "application/json":
        return await parse_json(model, await request.body(), ("body",), context, settings), None
    if kind != "multipart/form-data":
        raise UnsupportedMediaTypeError(
            f"Content-Type must be application/json or multipart/form-data, got {kind or 'none'!r}"
        )
    form = await request.form()
    upload, raw = form.get("image"), form.get("request", "{}")
    if not isinstance(upload, UploadFile):
        raise RequestValidationError(
            [{"loc": ("body", "image"), "msg": "image file is required", "type": "missing"}]
        )
    if not isinstance(raw, str):
        raise RequestValidationError(
            [{"loc": ("body", "request"), "msg": "must be a JSON string", "type": "string_type"}]
        )
    body = await parse_json(model, raw, ("body", "request"), context, settings)
    if getattr(body, "embedding_id", None) is not None:
        # The upload is the image: an id beside it would be silently ignored.
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "request", "embedding_id"),
                    "msg": "send either an uploaded image or an embedding_id, not both",
                    "type": "value_error",
                }
            ]
        )
    return body, await read_image(upload, settings, request.app.state.service)


async def resolve_embedding(
    service: InferenceService, embedding_id: str | None, pixels: np.ndarray | None
) -> tuple[str, ImageEmbedding]:
    """The embedding of the uploaded image (encoded once, cached), or the one under the id.

    Raises:
        RequestValidationError: Neither an image nor an ``embedding_id`` was sent.
        NotFoundError: The id is unknown or was evicted.
    """
    if pixels is not None:
        key, embedding, _ = await service.embed(pixels)
        return key, embedding
    if embedding_id is None:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "embedding_id"),
                    "msg": "embedding_id is required (or upload the image as multipart)",
                    "type": "missing",
                }
            ]
        )
    return embedding_id, await service.fetch_embedding(embedding_id)
