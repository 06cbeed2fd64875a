"""A task's image bytes: a ``data:`` URL, or a file of the configured Label Studio.

Label Studio stores task images as paths of its own server (``/data/upload/1/a.png``,
``/data/local-files/?d=...``) or as full URLs. Paths and URLs of ``label_studio_url`` are
fetched from it with its token (``tokens.auth_headers``, as the SDK's ``get_local_path`` and
client send it); URLs of the hosts in ``label_studio_image_hosts`` are fetched without
it; any other URL is refused (422), so that a request cannot make the service call an address
of its network. Redirects are not followed, for the same reason.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from repvit_sam import InvalidInputError

from ...settings import Settings
from ..common import ImageFetchError, decode_data_url, download
from .tokens import auth_headers

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        raise InvalidInputError(f"{url!r} has an invalid port") from None
    return scheme, (parts.hostname or "").lower(), port


def _allowed_host(url: str, hosts: list[str]) -> bool:
    """Whether ``url``'s host (or ``host:port``) is in ``label_studio_image_hosts``."""
    if "*" in hosts:
        return True
    _, host, port = _origin(url)
    return any(entry.lower() in (host, f"{host}:{port}") for entry in hosts)


def resolve(url: str, settings: Settings, field: str) -> tuple[str, bool]:
    """The absolute URL to GET for task value ``url``, and whether it is Label Studio's.

    Raises:
        InvalidInputError: A path without ``label_studio_url``, another scheme, or a host that
            is neither Label Studio's nor in ``label_studio_image_hosts``.
    """
    base = settings.label_studio_url
    if url.startswith("/") and not url.startswith("//"):
        if base is None:
            raise InvalidInputError(
                f"{field} is the Label Studio path {url!r}: set REPVIT_SAM_LABEL_STUDIO_URL "
                "(and REPVIT_SAM_LABEL_STUDIO_API_KEY) so that the service can fetch it"
            )
        url = urljoin(base.rstrip("/") + "/", url.lstrip("/"))
    scheme, host, _ = _origin(url)
    if scheme not in _DEFAULT_PORTS or not host:
        raise InvalidInputError(
            f"{field} must be a data: URL, an http(s) URL or a Label Studio path, got "
            f"{url[:80]!r} (cloud storage URIs are not fetched: serve the images through "
            "Label Studio)"
        )
    if base is not None and _origin(url) == _origin(base):
        return url, True
    if _allowed_host(url, settings.label_studio_image_hosts):
        return url, False
    raise ImageFetchError(
        f"{field}: {url} is not on the configured Label Studio "
        f"({base or 'REPVIT_SAM_LABEL_STUDIO_URL is unset'}); add its host to "
        "REPVIT_SAM_LABEL_STUDIO_IMAGE_HOSTS to allow it"
    )


async def read_task_image(url: object, settings: Settings, field: str) -> bytes:
    """The bytes of the image a task names, within ``max_upload_bytes`` and
    ``label_studio_fetch_seconds``."""
    if not isinstance(url, str) or not url:
        raise InvalidInputError(f"{field} must be the image's URL, got {type(url).__name__}")
    if url[:5].lower() == "data:":
        return decode_data_url(url, settings.max_upload_bytes, field)
    target, own = resolve(url, settings, field)
    headers, key, seconds = {}, settings.label_studio_api_key, settings.label_studio_fetch_seconds
    if own and key is not None and settings.label_studio_url is not None:
        headers = await auth_headers(settings.label_studio_url, key.get_secret_value(), seconds)
    return await download(
        target, headers, settings.max_upload_bytes, settings.label_studio_fetch_seconds, field
    )
