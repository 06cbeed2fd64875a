"""The demo's routes without a browser: the page, its files, the sample photos."""

from __future__ import annotations

import fnmatch
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from repvit_sam_server import Settings, create_app
from repvit_sam_server.routes.demo import SAMPLES, STATIC_DIR

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


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


async def test_the_favicon_is_served_where_browsers_look(http: httpx.AsyncClient) -> None:
    for path in ("/favicon.ico", "/static/favicon.svg"):
        icon = await http.get(path)
        assert icon.status_code == 200, path
        assert icon.headers["content-type"].startswith("image/svg+xml")
        assert icon.content == (STATIC_DIR / "favicon.svg").read_bytes()


def test_every_static_file_ships_in_the_wheel() -> None:
    tomllib = pytest.importorskip(
        "tomllib", reason="reads pyproject.toml with Python 3.11's tomllib"
    )
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["repvit_sam_server"]
    for file in STATIC_DIR.rglob("*"):
        if file.is_file():
            name = file.relative_to(STATIC_DIR.parent).as_posix()
            assert any(fnmatch.fnmatch(name, p) for p in patterns), f"{name} is not package data"


async def test_the_page_reads_the_services_503_bodies(http: httpx.AsyncClient) -> None:
    # static/js/api.js tells a model still loading, or failed, from a busy server by the body.
    script = (STATIC_DIR / "js" / "api.js").read_text()
    assert "/^the model failed to load/i" in script and "/^the model is still loading/i" in script
    ready = await http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["detail"].startswith("the model is still loading")
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    files = {"image": ("a.png", png.getvalue())}
    embed = await http.post("/embed", files=files, headers={"X-API-Key": "secret"})
    assert embed.status_code == 503, embed.text
    assert embed.json()["detail"].startswith("the model is still loading")
