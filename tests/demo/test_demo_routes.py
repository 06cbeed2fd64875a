"""The demo's routes without a browser: the page, its files, the sample photos."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image

from repvit_sam_server import Settings, create_app
from repvit_sam_server.routes.demo import SAMPLES, STATIC_DIR

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # The model never loads (no lifespan): these routes need neither it nor the API key.
    app = create_app(Settings(api_key="secret", warmup=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def test_page_and_its_modules_are_served_without_the_key(http: httpx.AsyncClient) -> None:
    page = await http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/static/js/main.js">' in page.text
    for name in ("style.css", "js/main.js", "js/api.js", "js/masks.js"):
        response = await http.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert response.content == (STATIC_DIR / name).read_bytes()
    script = await http.get("/static/js/main.js")
    assert script.headers["content-type"].startswith("text/javascript")  # modules need it


@pytest.mark.parametrize(
    "path",
    [
        "/static/../routes/demo.py",
        "/static/%2e%2e/settings.py",
        "/static/nope.js",
        "/static/%00.css",
        "/static/" + "a" * 5000 + ".css",
    ],
)
async def test_nothing_outside_the_static_files(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path)
    assert response.status_code == 404
    assert "detail" in response.json()


async def test_samples_are_scikit_image_photos(http: httpx.AsyncClient) -> None:
    listed = (await http.get("/samples")).json()
    assert [s["name"] for s in listed] == list(SAMPLES)
    photo = await http.get(listed[0]["url"])
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(photo.content)).size == (600, 400)  # skimage.data.coffee()
    assert (await http.get("/samples/unknown.jpg")).status_code == 404
