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
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    # Starlette decodes header bytes as latin-1: this recovers the bytes the client sent, so
    # that a non-ASCII key sent as UTF-8 matches.
    if api_key is None or not secrets.compare_digest(api_key.encode("latin-1"), expected):
        raise UnauthorizedError("missing or wrong X-API-Key header")


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
