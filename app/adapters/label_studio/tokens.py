"""The header that authenticates the service to Label Studio, as its SDK builds it.

A legacy token is sent as ``Authorization: Token <key>``. A personal access token (a JWT
refresh token, what Label Studio 1.15+ shows on the Account page) is exchanged at
``/api/token/refresh/`` for an access token, sent as ``Bearer``, and reused until shortly
before it expires, as the SDK's client does.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from urllib.parse import urljoin

import httpx

from ..common import ImageFetchError

# Access tokens by (Label Studio URL, refresh token): one entry per configuration.
_access: dict[tuple[str, str], tuple[str, float]] = {}
# An access token is renewed this many seconds before its expiry.
_MARGIN = 30.0


def _claims(token: str) -> dict | None:
    """The JSON header and payload of a JWT-shaped token (unverified), or None."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header, payload = (
            json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2]
        )
    except (binascii.Error, ValueError):
        return None
    if not isinstance(header, dict) or "alg" not in header or not isinstance(payload, dict):
        return None
    return payload


async def auth_headers(base: str, key: str, seconds: float) -> dict[str, str]:
    """``{"Authorization": ...}`` for Label Studio at ``base`` with token ``key``."""
    if _claims(key) is None:
        return {"Authorization": f"Token {key}"}
    cached = _access.get((base, key))
    if cached is None or cached[1] < time.time() + _MARGIN:
        url = urljoin(base.rstrip("/") + "/", "api/token/refresh/")
        try:
            async with httpx.AsyncClient(timeout=seconds, trust_env=False) as http:
                response = await http.post(url, json={"refresh": key})
        except httpx.HTTPError as err:
            raise ImageFetchError(f"could not reach Label Studio at {url}: {err}") from None
        try:
            access = response.json().get("access") if response.status_code == 200 else None
        except (ValueError, AttributeError):
            access = None
        if not isinstance(access, str):
            raise ImageFetchError(
                f"Label Studio refused the personal access token REPVIT_SAM_LABEL_STUDIO_API_KEY "
                f"(HTTP {response.status_code} from {url})"
            )
        expiry = (_claims(access) or {}).get("exp")
        cached = (access, float(expiry) if isinstance(expiry, (int, float)) else time.time() + 60)
        _access[(base, key)] = cached
    return {"Authorization": f"Bearer {cached[0]}"}
