"""``GET /``: the browser demo (static files shipped in ``app/static``) and its sample photos.

None of these routes needs the API key: the page asks the person for it and sends it with the
model calls. Sample photos come from scikit-image's bundled data, encoded on first request.
"""

from __future__ import annotations

import asyncio
import functools
import io
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from PIL import Image

from ..errors import NotFoundError

router = APIRouter(tags=["demo"], include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The page loads only its own files; the model calls go to this origin.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

# skimage.data function -> caption; all three ship inside scikit-image (no download).
SAMPLES = {
    "coffee": "Coffee cup",
    "chelsea": "Chelsea the cat",
    "astronaut": "Astronaut",
}


@router.get("/", response_class=FileResponse)
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)


@router.get("/favicon.ico", response_class=FileResponse)
async def favicon() -> FileResponse:
    """The page's icon (an SVG), also where browsers look for one without being told."""
    return FileResponse(
        STATIC_DIR / "favicon.svg", media_type=_MEDIA_TYPES[".svg"], headers=_PAGE_HEADERS
    )


@router.get("/static/{path:path}", response_class=FileResponse)
async def static(path: str) -> FileResponse:
    """Files under ``app/static`` with a known type; nothing outside that folder."""
    try:
        file = (STATIC_DIR / path).resolve()
        found = file.is_relative_to(STATIC_DIR) and file.is_file()
    except (ValueError, OSError):  # a NUL byte, a name too long for the file system
        found = False
    if not found or _MEDIA_TYPES.get(file.suffix) is None:
        raise NotFoundError(f"no static file {path[:200]!r}")
    media_type = _MEDIA_TYPES[file.suffix]
    return FileResponse(file, media_type=media_type, headers=_PAGE_HEADERS)


@router.get("/samples")
async def samples() -> list[dict[str, str]]:
    """The sample photos: ``[{name, title, url}]``."""
    return [
        {"name": name, "title": title, "url": f"/samples/{name}.jpg"}
        for name, title in SAMPLES.items()
    ]


@router.get("/samples/{name}.jpg", response_class=Response)
async def sample(
    name: Annotated[str, PathParam(pattern=r"^[a-z]+$", description="A name from /samples.")],
) -> Response:
    if name not in SAMPLES:
        raise NotFoundError(f"no sample {name!r}; GET /samples lists them")
    data = await asyncio.to_thread(_sample_jpeg, name)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})


@functools.lru_cache(maxsize=len(SAMPLES))
def _sample_jpeg(name: str) -> bytes:
    import skimage.data  # the server extra installs it; only the demo needs it

    stream = io.BytesIO()
    Image.fromarray(getattr(skimage.data, name)()).save(stream, format="JPEG", quality=92)
    return stream.getvalue()
