"""What the tool adapters share: errors in each protocol's own shape, JSON bodies that carry
an image, and base64 images decoded within the service's limits.

An adapter's router uses a subclass of ``ProtocolRoute``: every exception its handlers raise,
in a dependency (the API key), in parsing or in the model call, becomes the status the native
routes give it (``repvit_sam_server.errors.status_of``) with a body in the tool's format.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from repvit_sam import ImageTooLargeError, InvalidImageError, RepViTSAMError

from ..bodies import media_type, parse_body
from ..errors import PayloadTooLargeError, UnsupportedMediaTypeError, status_of
from ..inference import InferenceService
from ..settings import Settings

logger = logging.getLogger(__name__)

BodyT = TypeVar("BodyT", bound=BaseModel)
Handler = Callable[[Request], Coroutine[Any, Any, Response]]

# Larger bodies are parsed on a worker thread (as app/bodies.py does).
_PARSE_INLINE_BYTES = 64 << 10


class ProtocolRoute(APIRoute):
    """An ``APIRoute`` whose errors are answered by ``error_response`` in the tool's format."""

    @staticmethod
    def error_response(
        status: int, message: str, err: Exception, headers: dict[str, str]
    ) -> Response:
        raise NotImplementedError

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        render = self.error_response

        async def protocol_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as err:
                message = validation_message(err)
                logger.debug("%s %s -> 422: %s", request.method, request.url.path, message)
                return render(422, message, err, {})
            except StarletteHTTPException as err:
                return render(err.status_code, str(err.detail), err, dict(err.headers or {}))
            except RepViTSAMError as err:
                status, headers = status_of(err)
                if status >= 500:
                    logger.log(
                        logging.ERROR if status == 500 else logging.WARNING,
                        "%s %s -> %d: %s", request.method, request.url.path, status, err,
                        exc_info=err if status == 500 else None,
                    )  # fmt: skip
                return render(status, str(err), err, headers)

        return protocol_handler


def openapi_body(example: dict[str, Any], description: str) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads its JSON body itself: the body and an example."""
    content = {"application/json": {"schema": {"type": "object"}, "example": example}}
    return {"requestBody": {"required": True, "description": description, "content": content}}


def openapi_answers(
    example: Any, error: dict[str, Any], media: str = "application/json"
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of an adapter route: its answer and its error shape, with examples."""
    return {
        200: {"description": "The tool's answer.", "content": {media: {"example": example}}},
        "4XX": {
            "description": "An error in the tool's shape.",
            "content": {"application/json": {"example": error}},
        },
    }


def validation_message(err: RequestValidationError) -> str:
    """Pydantic's errors as one line naming each field: ``body.params.marks.0.type: ...``."""
    parts = []
    for error in err.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', '')}" if where else str(error.get("msg", "")))
    return "; ".join(parts) or "invalid request"


def json_limit(settings: Settings) -> int:
    """Largest JSON body an adapter reads (a base64 image in it included): ``max_upload_bytes``,
    under the middleware's cut-off (``max_upload_bytes`` + 1 MiB), so that a body between the
    two gets this 413 in the tool's shape."""
    return max(settings.max_json_bytes, settings.max_upload_bytes)


async def read_json(request: Request, model: type[BodyT], settings: Settings) -> BodyT:
    """The body validated as ``model``: ``application/json`` only, within ``json_limit``.

    Raises:
        UnsupportedMediaTypeError: Another Content-Type (415).
        PayloadTooLargeError: A body over the limit (413).
        RequestValidationError: Not JSON, or not of ``model``'s shape (422, naming the field).
    """
    kind = media_type(request)
    if kind != "application/json":
        raise UnsupportedMediaTypeError(
            f"Content-Type must be application/json, got {kind or 'none'!r}"
        )
    raw = await request.body()
    limit = json_limit(settings)
    if len(raw) > limit:
        raise PayloadTooLargeError(f"the JSON body is {len(raw)} bytes, over the limit of {limit}")
    if len(raw) <= _PARSE_INLINE_BYTES:
        return parse_body(model, raw, ("body",), {})
    return await asyncio.to_thread(parse_body, model, raw, ("body",), {})


def decode_base64(text: str, field: str, max_bytes: int) -> bytes:
    """The bytes of base64 ``text`` (standard or URL-safe alphabet, a ``data:`` URL prefix
    allowed), refused beyond ``max_bytes`` before decoding.

    Raises:
        InvalidImageError: Not base64.
        ImageTooLargeError: More than ``max_bytes`` once decoded.
    """
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise InvalidImageError(f"{field}: a data URL must be base64 (data:<type>;base64,...)")
    decoded_size = len(text) * 3 // 4
    if decoded_size > max_bytes:
        raise ImageTooLargeError(
            f"{field}: about {decoded_size} bytes once decoded, over max_upload_bytes={max_bytes}"
        )
    compact = "".join(text.split()).replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError) as err:
        raise InvalidImageError(f"{field}: not valid base64 ({err})") from None


async def decode_image(service: InferenceService, settings: Settings, text: str, field: str) -> Any:
    """A base64 (or data URL) encoded image as HxWx3 uint8 RGB, decoded off the event loop."""
    data = await asyncio.to_thread(decode_base64, text, field, settings.max_upload_bytes)
    try:
        return await service.decode_image(data)
    except InvalidImageError as err:
        raise type(err)(f"{field}: {err}") from err
