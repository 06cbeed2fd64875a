"""Request bodies that are JSON against an ``embedding_id``, or multipart with the image itself.

``/segment``, ``/masks`` and ``/edges`` take either a JSON body naming an embedding from
/embed, or a multipart form with the ``image`` and the same JSON (without ``embedding_id``) in
its ``request`` field (one-shot use).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from repvit_sam import ImageEmbedding

from .deps import read_image
from .inference import InferenceService
from .settings import Settings

BodyT = TypeVar("BodyT", bound=BaseModel)


def multipart_schema(example: str, description: str) -> dict[str, Any]:
    """The OpenAPI schema of the one-shot form: ``image`` plus the JSON ``request``."""
    return {
        "type": "object",
        "required": ["image"],
        "properties": {
            "image": {"type": "string", "format": "binary"},
            "request": {"type": "string", "description": description, "example": example},
        },
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


async def read_body(
    request: Request, model: type[BodyT], settings: Settings, context: Mapping[str, Any]
) -> tuple[BodyT, np.ndarray | None]:
    """The validated body and, for a multipart request, the decoded HxWx3 uint8 image."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return parse_body(model, await request.body(), ("body",), context), None
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
    body = parse_body(model, raw, ("body", "request"), context)
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
    return body, await read_image(upload, settings)


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
