"""``/docs`` and ``/redoc`` in headless Chromium, against a real ``repvit-sam serve`` with a key.

Both pages must render from files the service serves itself (FastAPI's default pages load
Swagger UI and ReDoc from a CDN, and are blank offline): every request a page makes is recorded
and must go to the service on 127.0.0.1. Swagger UI's "Authorize" must send the API key.
The Chromium and the served model are the web demo's (tests/demo/conftest.py ``browser`` and
``server``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.demo.browser import API_KEY

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="needs Playwright's Python package (pip install -e '.[dev]')"
)

UNKNOWN_ID = "0" * 32


class Recorded:
    """A page and every request it made, with the errors it met."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.requests: list[Any] = []
        self.errors: list[str] = []

    def hosts(self) -> set[str]:
        """The hosts of every request (a ``blob:`` URL names its origin after the scheme)."""
        urls = [request.url.removeprefix("blob:") for request in self.requests]
        return {urlsplit(url).hostname or urlsplit(url).scheme for url in urls}

    def paths(self) -> set[str]:
        return {urlsplit(request.url.removeprefix("blob:")).path for request in self.requests}


@pytest.fixture
def recorded(browser: Any, server: str) -> Iterator[Recorded]:
    context = browser.new_context(base_url=server, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    seen = Recorded(page)
    context.on("request", lambda request: seen.requests.append(request))
    page.on("pageerror", lambda err: seen.errors.append(str(err)))
    # A Content-Security-Policy that blocks something the page does shows up here.
    page.on("console", lambda m: "Content Security Policy" in m.text and seen.errors.append(m.text))
    yield seen
    context.close()
    assert not seen.errors, f"errors in the page: {seen.errors}"


def _operations(server: str) -> dict[tuple[str, str], str]:
    """(method, path) -> summary of every operation in the service's OpenAPI document."""
    spec = httpx.get(f"{server}/openapi.json", timeout=10).json()
    return {
        (method.upper(), path): operation["summary"]
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    }


def test_swagger_ui_renders_every_operation_from_the_service_alone(recorded, server):
    page = recorded.page
    page.goto("/docs")
    page.locator(".opblock").first.wait_for()
    page.wait_for_load_state("networkidle")
    shown = set()
    for block in page.locator(".opblock").all():
        method = block.locator(".opblock-summary-method").inner_text().strip()
        path = block.locator(".opblock-summary-path").get_attribute("data-path")
        shown.add((method, path))
    assert ("POST", "/segment") in shown
    assert shown == set(_operations(server))
    assert {"/docs/static/swagger-ui-bundle.js", "/openapi.json"} <= recorded.paths()
    assert recorded.hosts() == {"127.0.0.1"}, [r.url for r in recorded.requests]

    # The upload form of /embed (EmbedForm) gets a file picker.
    embed = page.locator(".opblock-post", has=page.locator("[data-path='/embed']"))
    embed.locator(".opblock-summary").click()
    embed.get_by_role("button", name="Try it out").click()
    assert embed.locator("input[type=file]").count() == 1


def _get_unknown_embedding(page: Any) -> int:
    """Runs "Try it out" on GET /embeddings/{id} with an unknown id; the answered status."""
    block = page.locator(
        ".opblock-get", has=page.locator("[data-path='/embeddings/{embedding_id}']")
    )
    if not block.locator("button", has_text="Execute").is_visible():
        block.locator(".opblock-summary").click()
        block.get_by_role("button", name="Try it out").click()
        block.locator("input[placeholder='embedding_id']").fill(UNKNOWN_ID)
    with page.expect_response(f"**/embeddings/{UNKNOWN_ID}") as answer:
        block.get_by_role("button", name="Execute").click()
    return answer.value.status


def test_authorize_sends_the_api_key(recorded):
    page = recorded.page
    page.goto("/docs")
    page.locator(".opblock").first.wait_for()
    assert _get_unknown_embedding(page) == 401  # no key yet

    page.get_by_role("button", name="Authorize").first.click()
    page.locator(".auth-container input").fill(API_KEY)
    page.locator(".auth-btn-wrapper button.authorize").click()
    page.locator("button.btn-done").click()
    assert _get_unknown_embedding(page) == 404  # let in: the id is unknown

    sent = [r for r in recorded.requests if r.url.endswith(f"/embeddings/{UNKNOWN_ID}")]
    assert [r.headers.get("x-api-key") for r in sent] == [None, API_KEY]
    assert recorded.hosts() == {"127.0.0.1"}, [r.url for r in recorded.requests]


def test_redoc_renders_from_the_service_alone(recorded, server):
    page = recorded.page
    page.goto("/redoc")
    page.locator("h2", has_text="Masks for point and box prompts").wait_for()  # /segment's
    page.wait_for_load_state("networkidle")
    headings = set(page.locator("h2").all_inner_texts())
    assert set(_operations(server).values()) <= headings
    assert "/docs/static/redoc.standalone.js" in recorded.paths()
    assert recorded.hosts() == {"127.0.0.1"}, [r.url for r in recorded.requests]
