"""The service's own exceptions and the one place where exceptions become HTTP statuses.

::

    repvit_sam.RepViTSAMError
    ├── InvalidInputError            422 (bad prompt, mask input, parameter, image content)
    │   ├── InvalidImageError        422 (not an image, truncated, zero bytes)
    │   │   └── ImageTooLargeError   413 (too many pixels, decompression bomb)
    │   ├── PayloadTooLargeError     413 (an upload, a JSON body or an answer over its bound)
    │   └── UnsupportedMediaTypeError  415 (a body neither JSON nor multipart)
    ├── ServiceError
    │   ├── NotFoundError            404 (unknown, evicted or deleted id)
    │   ├── UnauthorizedError        401 (missing or wrong X-API-Key)
    │   ├── NotReadyError            503 (model still loading)
    │   ├── ModelLoadError           503 (the model failed to load; /healthz is 503 too)
    │   └── BusyError                503 + Retry-After (too much queued work, or draining)
    └── repvit_sam.CancelledError    503 (a model call dropped: its client went away)
        └── DeadlineExceededError    504 (a model call ran or waited past its deadline)

A task past its time limit is 504, not 503: retrying the same request is unlikely to help,
asking for less work (a smaller point grid, fewer crop layers) or raising the limit does.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from repvit_sam import (
    CancelledError,
    DeadlineExceededError,
    ImageTooLargeError,
    InvalidInputError,
    RepViTSAMError,
)

logger = logging.getLogger(__name__)


class ServiceError(RepViTSAMError):
    """An error of the service rather than of the model library."""


class PayloadTooLargeError(InvalidInputError):
    """The upload is larger than ``max_upload_bytes``."""


class UnsupportedMediaTypeError(InvalidInputError):
    """The request body is of a media type the route does not take (415)."""


class NotFoundError(ServiceError, KeyError):
    """No embedding or logits under this id (never stored, evicted, expired or deleted)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class UnauthorizedError(ServiceError):
    """The ``X-API-Key`` header is missing or wrong."""


class NotReadyError(ServiceError):
    """The model is not loaded yet."""


class ModelLoadError(ServiceError):
    """The model failed to load; this replica will not become ready (``/healthz`` is 503 too,
    so that an orchestrator restarts it)."""


class BusyError(ServiceError):
    """The model queue is full; the client should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def status_of(err: RepViTSAMError) -> tuple[int, dict[str, str]]:
    """The HTTP status and headers of a library or service error (500 for an unexpected one)."""
    if isinstance(err, (ImageTooLargeError, PayloadTooLargeError)):
        return 413, {}
    if isinstance(err, UnsupportedMediaTypeError):
        return 415, {}
    if isinstance(err, InvalidInputError):
        return 422, {}
    if isinstance(err, NotFoundError):
        return 404, {}
    if isinstance(err, UnauthorizedError):
        return 401, {"WWW-Authenticate": "X-API-Key"}
    if isinstance(err, BusyError):
        return 503, {"Retry-After": str(err.retry_after)}
    if isinstance(err, NotReadyError):
        return 503, {"Retry-After": "1"}
    if isinstance(err, ModelLoadError):
        return 503, {}
    if isinstance(err, DeadlineExceededError):
        return 504, {}
    if isinstance(err, CancelledError):
        return 503, {}
    return 500, {}


async def handle_library_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, RepViTSAMError)
    status, headers = status_of(err)
    if status == 500:
        logger.error("%s %s failed: %s", request.method, request.url.path, err, exc_info=err)
    elif status > 500:
        logger.warning("%s %s -> %d: %s", request.method, request.url.path, status, err)
    else:
        logger.debug("%s %s -> %d: %s", request.method, request.url.path, status, err)
    return JSONResponse({"detail": str(err)}, status_code=status, headers=headers)


def clean_validation_errors(errors: Any) -> list[dict[str, Any]]:
    """Pydantic errors without the echoed input and context, which may hold NaN or exceptions."""
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")}
        for e in errors
    ]


async def handle_validation_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, RequestValidationError)
    detail = clean_validation_errors(err.errors())
    logger.debug("%s %s -> 422: %s", request.method, request.url.path, detail)
    return JSONResponse({"detail": detail}, status_code=422)


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """The ``Allow`` value of the request's path: every method that some route takes there."""
    scope = {
        key: request.scope[key] for key in ("type", "path", "root_path") if key in request.scope
    }
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    ]
    return ", ".join([*allowed, "OPTIONS"])


async def handle_http_error(request: Request, err: Exception) -> Response:
    """Starlette's errors as JSON. Its 405 names the methods of the path's first route only
    (``GET`` for ``/embeddings/{id}``, whose ``DELETE`` is another route): the ``Allow`` here
    names them all, and ``OPTIONS`` gets it with a 204."""
    assert isinstance(err, StarletteHTTPException)
    headers = dict(err.headers or {})
    if err.status_code == 405:
        headers["Allow"] = allowed_methods(request)
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=headers)
    return JSONResponse({"detail": err.detail}, status_code=err.status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Maps library and service errors to JSON ``{"detail": ...}`` responses."""
    app.add_exception_handler(RepViTSAMError, handle_library_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_error)


def payload_too_large(limit: int) -> JSONResponse:
    """The 413 sent before reading a body whose Content-Length exceeds ``limit``."""
    return JSONResponse(
        {"detail": f"request body is larger than the limit of {limit} bytes (max_upload_bytes)"},
        status_code=413,
    )
