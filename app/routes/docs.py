"""``GET /docs`` (Swagger UI) and ``GET /redoc`` (ReDoc), whole without a network.

FastAPI's own pages load both from a CDN, so offline they are blank. These are FastAPI's pages
(``get_swagger_ui_html``, ``get_redoc_html``) pointed at the Swagger UI 5 and ReDoc 2 dist files
that the fastapi-offline package installs, served under ``/docs/static/``. Each page carries a
Content-Security-Policy that lets it load from this origin only: Swagger UI's inline start-up
script is allowed by its hash; ReDoc may add ``<style>`` elements and start its search worker
from a ``blob:`` URL. The pages need no API key; "Authorize" sends the one typed into it."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import importlib.resources
import re
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response

from ..errors import NotFoundError

router = APIRouter(include_in_schema=False)

STATIC_URL = "/docs/static"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
# No validator badge: it would load an image from validator.swagger.io.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}
# ReDoc 2 shows Redocly's logo from Redocly's CDN in its sidebar, whatever its options say: the
# bundle is served with that one URL replaced by an empty image.
_REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_EMPTY_IMAGE = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"
_POLICY = (
    "default-src 'none'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


@functools.cache
def asset_folder() -> Path:
    """Where fastapi-offline keeps the dist files (a folder inside the installed package)."""
    return Path(str(importlib.resources.files("fastapi_offline") / "static"))


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def _with_policy(page: HTMLResponse, directives: str) -> HTMLResponse:
    """``page`` with a CSP of the common ``directives`` (scripts from this origin and the page's
    own inline ones, by hash) and no caching of the page."""
    hashes = "".join(
        " 'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(page.body)
    )
    page.headers.update(
        {
            "Content-Security-Policy": f"{_POLICY}; script-src 'self'{hashes}; {directives}",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        }
    )
    return page


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    page = get_swagger_ui_html(
        openapi_url=root + request.app.openapi_url,
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
    )
    return _with_policy(page, "style-src 'self'")


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    page = get_redoc_html(
        openapi_url=root + request.app.openapi_url,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png",
        with_google_fonts=False,
    )
    # ReDoc injects <style> elements, and builds its search index in a worker from a blob: URL.
    return _with_policy(page, "style-src 'self' 'unsafe-inline'; worker-src blob:")


@functools.cache
def _redoc_bundle() -> bytes:
    return (asset_folder() / "redoc.standalone.js").read_bytes().replace(_REDOC_LOGO, _EMPTY_IMAGE)


@router.get(STATIC_URL + "/{name}")
async def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFoundError(f"no docs asset {name[:100]!r}")
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
    if name == "redoc.standalone.js":
        bundle = await asyncio.to_thread(_redoc_bundle)
        return Response(bundle, media_type=ASSETS[name], headers=headers)
    return FileResponse(asset_folder() / name, media_type=ASSETS[name], headers=headers)
