"""The ``image`` of Roboflow inference requests: ``{"type": "base64" | "numpy" | "url", "value"}``.

Roboflow's ``numpy`` type is a pickled array, and unpickling runs whatever the sender wrote:
here ``numpy`` takes base64 of a ``.npy`` file (``numpy.save``), read with
``allow_pickle=False`` after its header is checked; a pickle is refused with a 422 saying so.
Arrays are BGR, as Roboflow reads them (OpenCV's order).

``url`` images are fetched only from the hosts listed in ``REPVIT_SAM_ROBOFLOW_IMAGE_URL_HOSTS``
(none by default), over http(s), without following redirects (a redirect could lead anywhere),
within ``max_upload_bytes`` and ``roboflow_image_url_seconds``: a request cannot make the
service reach an address its operator did not name.
"""

from __future__ import annotations

import asyncio
import io
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from repvit_sam import InvalidImageError, InvalidInputError, load_image

from ..errors import PayloadTooLargeError
from ..inference import InferenceService
from ..settings import Settings
from .protocol import decode_base64, decode_image

IMAGE_TYPES = ("base64", "numpy", "url")


class RequestImage(BaseModel):
    """Roboflow's ``InferenceRequestImage``."""

    model_config = ConfigDict(extra="ignore")

    type: str = Field(description="'base64', 'numpy' (base64 of a .npy file) or 'url'.")
    value: Any = None


async def load_request_image(
    image: RequestImage, service: InferenceService, settings: Settings
) -> np.ndarray:
    """The HxWx3 uint8 RGB pixels of ``image``, within the service's limits.

    Raises:
        InvalidInputError: An unknown type, a missing value, a URL host not allowed (422).
        InvalidImageError: Not an image, a pickle, a failed download (422).
        ImageTooLargeError, PayloadTooLargeError: Over ``max_pixels`` or ``max_upload_bytes``.
    """
    if image.type not in IMAGE_TYPES:
        raise InvalidInputError(
            f"image.type must be one of {', '.join(IMAGE_TYPES)}, got {image.type!r}"
        )
    if not isinstance(image.value, str) or not image.value:
        raise InvalidInputError(f"image.value: a non-empty string is required for {image.type!r}")
    if image.type == "base64":
        return await decode_image(service, settings, image.value, "image.value")
    if image.type == "numpy":
        data = await asyncio.to_thread(
            decode_base64, image.value, "image.value", settings.max_upload_bytes
        )
        return await asyncio.to_thread(read_npy_image, data, settings.max_pixels)
    data = await fetch_image(image.value, settings)
    return await service.decode_image(data)


def read_npy(data: bytes, field: str, max_elements: int) -> np.ndarray:
    """A numeric ``.npy`` array: the header is checked before any data is read (a header that
    claims a huge shape costs nothing), and nothing is unpickled.

    Raises:
        InvalidInputError: Not a .npy file (a pickle, say), not numeric, truncated.
        PayloadTooLargeError: More than ``max_elements`` numbers.
    """
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
    except (ValueError, OSError, EOFError) as err:
        raise InvalidInputError(
            f"{field}: expected base64 of a .npy file (numpy.save); pickled arrays are refused, "
            f"since unpickling runs code ({err})"
        ) from None
    if dtype.kind not in "biuf":
        raise InvalidInputError(f"{field}: expected a numeric array, got dtype {dtype}")
    count = int(np.prod(shape))
    if count > max_elements:
        raise PayloadTooLargeError(f"{field}: {shape} holds over {max_elements} numbers")
    if len(data) - stream.tell() != count * dtype.itemsize:
        raise InvalidInputError(
            f"{field}: the .npy data is {len(data) - stream.tell()} bytes, its header says "
            f"{count * dtype.itemsize}"
        )
    array = np.frombuffer(data, dtype, count, offset=stream.tell())
    return array.reshape(shape, order="F" if fortran_order else "C")


def read_npy_image(data: bytes, max_pixels: int) -> np.ndarray:
    """A ``.npy`` HxW, HxWx1 or HxWx3 (BGR) image as HxWx3 RGB uint8."""
    try:
        array = read_npy(data, "image.value", 3 * max_pixels)
    except InvalidInputError as err:
        if isinstance(err, PayloadTooLargeError):
            raise
        raise InvalidImageError(str(err)) from None
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3)):
        raise InvalidImageError(
            f"image.value: expected an HxW, HxWx1 or HxWx3 array, got shape {array.shape}"
        )
    if array.ndim == 3 and array.shape[2] == 3:
        array = array[:, :, ::-1]  # BGR, as Roboflow (OpenCV) reads arrays
    return load_image(np.ascontiguousarray(array), max_pixels=max_pixels)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


def check_url(url: str, settings: Settings) -> str:
    """``url`` if it is http(s) on an allowed host; InvalidInputError otherwise."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    allowed = {h.lower() for h in settings.roboflow_image_url_hosts}
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidInputError(f"image.value: expected an http(s) URL, got {url[:100]!r}")
    if host not in allowed:
        raise InvalidInputError(
            f"image.value: images are not fetched from {host!r} (hosts allowed: "
            f"{', '.join(sorted(allowed)) or 'none'}; REPVIT_SAM_ROBOFLOW_IMAGE_URL_HOSTS); send "
            "the image as base64"
        )
    return url


async def fetch_image(url: str, settings: Settings) -> bytes:
    """The bytes at an allowed ``url``, within ``max_upload_bytes`` and the time limit."""
    check_url(url, settings)
    seconds = settings.roboflow_image_url_seconds
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(_download, url, settings.max_upload_bytes, seconds), seconds
        )
    except asyncio.TimeoutError:
        raise InvalidImageError(
            f"image.value: the download did not finish within {seconds:g} s"
        ) from None


def _download(url: str, max_bytes: int, seconds: float) -> bytes:
    deadline = time.monotonic() + seconds
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(url, timeout=seconds) as response:
            chunks, size = [], 0
            while chunk := response.read(1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLargeError(
                        f"image.value: the image at the URL is over max_upload_bytes={max_bytes}"
                    )
                if time.monotonic() > deadline:
                    raise InvalidImageError(f"image.value: download slower than {seconds:g} s")
                chunks.append(chunk)
    except urllib.error.HTTPError as err:
        raise InvalidImageError(
            f"image.value: the URL answered HTTP {err.code} (redirects are not followed)"
        ) from None
    except (urllib.error.URLError, OSError) as err:
        raise InvalidImageError(f"image.value: could not fetch the URL ({err})") from None
    return b"".join(chunks)
