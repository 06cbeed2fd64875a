"""Dependencies of the routes, as ``Annotated`` aliases."""

from __future__ import annotations

import secrets
from typing import Annotated

import numpy as np
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from starlette.datastructures import UploadFile

from .errors import PayloadTooLargeError, UnauthorizedError
from .inference import InferenceService
from .metrics import Metrics
from .settings import Settings

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_service(request: Request) -> InferenceService:
    return request.app.state.service


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ServiceDep = Annotated[InferenceService, Depends(get_service)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def require_api_key(
    settings: SettingsDep, api_key: Annotated[str | None, Security(_api_key_header)]
) -> None:
    """Checks ``X-API-Key`` when the service has a key configured."""
    if not api_key_matches(settings, api_key):
        raise UnauthorizedError("missing or wrong X-API-Key header")


def api_key_matches(settings: Settings, api_key: str | None, *, from_header: bool = True) -> bool:
    """Whether ``api_key`` is the service's key (always True when none is configured).

    Args:
        from_header: The key was read from a header, whose bytes Starlette decodes as latin-1;
            a query parameter or JSON field is already the text the client meant.
    """
    if settings.api_key is None:
        return True
    if api_key is None:
        return False
    expected = settings.api_key.get_secret_value().encode()
    # latin-1 recovers the bytes the client sent, so that a non-ASCII key sent as UTF-8 matches.
    supplied = api_key.encode("latin-1" if from_header else "utf-8", errors="replace")
    return secrets.compare_digest(supplied, expected)


async def read_image(
    upload: UploadFile, settings: Settings, service: InferenceService
) -> np.ndarray:
    """Decodes an uploaded image to HxWx3 uint8 RGB off the event loop, enforcing the limits."""
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLargeError(
            f"image upload is larger than max_upload_bytes={settings.max_upload_bytes}"
        )
    return await service.decode_image(data)
