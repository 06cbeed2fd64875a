"""What every tool adapter shares with the native routes: the API key, the limits, the metrics
and the 4xx rules, answered in the tool's own error shape.

- ``AdapterRoute``: a route class whose requests are counted under ``protocol="<tool>"`` in
  /metrics and whose errors (the service's, validation, HTTP) become the status the native
  routes would answer, with the body the tool expects (``error_body``). Make one per tool with
  ``adapter_route(protocol, error_body)`` and pass it as ``APIRouter(route_class=...)``.
- ``require_adapter_key``: the service's ``api_key``, taken from ``X-API-Key``, from the
  password of HTTP Basic auth (what Label Studio's ML backend connection sends) or from a
  ``Bearer`` token.
- ``decode_data_url`` and ``download``: image bytes from a ``data:`` URL or an HTTP(S) URL, within
  ``max_upload_bytes`` and a time limit. Whether a URL may be fetched at all is the adapter's
  rule (never an arbitrary host by default).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, ClassVar

import httpx
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from repvit_sam import InvalidInputError, RepViTSAMError

from ..deps import SettingsDep
from ..errors import PayloadTooLargeError, UnauthorizedError, clean_validation_errors, status_of

logger = logging.getLogger(__name__)

ErrorBody = Callable[[int, str, Request], Any]


class ImageFetchError(InvalidInputError):
    """A task's image could not be read from the URL it names (422): refused, unreachable,
    an error status, too slow."""


class AdapterRoute(APIRoute):
    """A route of a tool's protocol (subclassed by ``adapter_route``)."""

    protocol: ClassVar[str] = ""
    error_body: ClassVar[ErrorBody]

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        error_body = type(self).error_body

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as err:
                status, headers, message = describe_error(err)
                log = logger.error if status >= 500 and status != 503 else logger.debug
                log(
                    "%s %s -> %d: %s", request.method, request.url.path, status, message,
                    exc_info=err if status == 500 else None,
                )  # fmt: skip
                body = error_body(status, message, request)
                return JSONResponse(body, status_code=status, headers=headers)

        return answer


def adapter_route(protocol: str, error_body: ErrorBody) -> type[AdapterRoute]:
    """The route class of one tool: ``protocol`` labels its metrics, ``error_body(status,
    message, request)`` is the JSON its errors answer."""
    name = "".join(part.title() for part in protocol.split("-")) + "Route"
    return type(
        name, (AdapterRoute,), {"protocol": protocol, "error_body": staticmethod(error_body)}
    )


def describe_error(err: Exception) -> tuple[int, dict[str, str], str]:
    """The status, headers and message the native routes would answer for ``err``."""
    if isinstance(err, RepViTSAMError):
        status, headers = status_of(err)
        return status, headers, str(err)
    if isinstance(err, RequestValidationError):
        problems = [
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}"
            for e in clean_validation_errors(err.errors())
        ]
        return 422, {}, "; ".join(problems)
    if isinstance(err, StarletteHTTPException):
        return err.status_code, dict(err.headers or {}), str(err.detail)
    return 500, {}, f"internal error ({type(err).__name__}); see the service's log"


def presented_key(headers: Mapping[str, str]) -> bytes | None:
    """The key a request presents: ``X-API-Key``, a Basic auth password or a Bearer token."""
    if "x-api-key" in headers:
        # Starlette decodes header bytes as latin-1: this recovers the bytes the client sent.
        return headers["x-api-key"].encode("latin-1")
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip().encode("latin-1")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except binascii.Error:
            return None
        return decoded.partition(b":")[2]
    return None


def require_adapter_key(settings: SettingsDep, request: Request) -> None:
    """Checks the service's ``api_key`` when one is configured (see ``presented_key``)."""
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    key = presented_key(request.headers)
    if key is None or not secrets.compare_digest(key, expected):
        raise UnauthorizedError(
            "missing or wrong API key: send it as the password of HTTP Basic auth (Label "
            "Studio's ML backend authentication), as X-API-Key or as a Bearer token"
        )


def decode_data_url(url: str, max_bytes: int, field: str) -> bytes:
    """The bytes of a base64 ``data:`` URL (``data:image/png;base64,...``), at most
    ``max_bytes`` of them (413 beyond); ``field`` names it in errors."""
    head, comma, payload = url.partition(",")
    if not comma or not head.lower().endswith(";base64"):
        raise InvalidInputError(f"{field}: a data: URL must be base64, data:<type>;base64,<data>")
    if len(payload) // 4 * 3 > max_bytes + 2:
        raise PayloadTooLargeError(f"{field}: the image is over max_upload_bytes={max_bytes}")
    try:
        data = base64.b64decode(payload, validate=True)
    except binascii.Error as err:
        raise InvalidInputError(f"{field}: the data: URL is not valid base64 ({err})") from None
    if len(data) > max_bytes:
        raise PayloadTooLargeError(f"{field}: the image is over max_upload_bytes={max_bytes}")
    return data


async def download(
    url: str, headers: Mapping[str, str], max_bytes: int, seconds: float, field: str
) -> bytes:
    """GETs ``url`` (no redirects followed) within ``max_bytes`` (413 beyond) and ``seconds``
    in all; any other failure is an ``ImageFetchError`` naming ``field``."""
    try:
        return await asyncio.wait_for(_read(url, headers, max_bytes, field), seconds)
    except asyncio.TimeoutError:
        raise ImageFetchError(f"{field}: {url} did not answer within {seconds:g} s") from None
    except httpx.HTTPError as err:
        reason = str(err) or type(err).__name__
        raise ImageFetchError(f"{field}: could not fetch {url}: {reason}") from None


async def _read(url: str, headers: Mapping[str, str], max_bytes: int, field: str) -> bytes:
    async with (
        httpx.AsyncClient(follow_redirects=False, trust_env=False) as http,
        http.stream("GET", url, headers=dict(headers)) as response,
    ):
        if response.status_code != 200:
            raise ImageFetchError(f"{field}: {url} answered HTTP {response.status_code}")
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_bytes:
            raise PayloadTooLargeError(f"{field}: the image is over max_upload_bytes={max_bytes}")
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLargeError(
                    f"{field}: the image is over max_upload_bytes={max_bytes}"
                )
            chunks.append(chunk)
        return b"".join(chunks)
