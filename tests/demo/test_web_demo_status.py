"""The web demo tells every state of the service in the page's own words, in headless
Chromium: a model that failed to load (a real ``repvit-sam serve`` of a broken checkpoint), a
model still loading, a busy server, everything mode with no mask past its filters; and the small
things: the favicon, the spinner beside (not over) the drop-zone text, a two-tone box outline."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import torch

from repvit_sam_server import Settings, create_app
from tests.demo.browser import ARTIFACTS, drag_box, open_page, open_sample
from tests.process_helpers import ServeProcess

# What a 503 of a full queue says (app/scheduler.py words it so, with a Retry-After).
BUSY = {"detail": "the model queue is full (64 calls); retry later"}


@pytest.fixture(scope="module")
def broken_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service under plain uvicorn (``repvit-sam serve`` refuses a bad checkpoint before it
    starts) with a checkpoint of another model: it answers, and its model fails to load."""
    folder = tmp_path_factory.mktemp("broken")
    checkpoint = folder / "broken.pt"
    torch.save({"classifier.weight": torch.zeros(2, 2)}, checkpoint)
    serve = ServeProcess(checkpoint, folder / "serve.log")
    uvicorn = [sys.executable, "-m", "uvicorn", "repvit_sam_server.main:create_app", "--factory"]
    serve.start(command=[*uvicorn, "--host", "127.0.0.1", "--port", str(serve.port)])
    try:
        deadline = time.monotonic() + 60
        while "failed to load" not in readyz_text(serve.base):
            running = serve.process is not None and serve.process.poll() is None
            assert running and time.monotonic() < deadline, f"no load failure:\n{serve.output()}"
            time.sleep(0.2)
        yield serve.base
    finally:
        serve.stop()


def readyz_text(base: str) -> str:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).text
    except httpx.TransportError:
        return ""


def still_loading() -> tuple[int, str]:
    """The service's own /readyz answer while its model loads (no lifespan: it never loads)."""

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(Settings(warmup=False)))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/readyz")

    # In a thread of its own: Playwright's sync API runs an event loop in this one.
    with ThreadPoolExecutor(1) as thread:
        answer = thread.submit(asyncio.run, ask()).result()
    return answer.status_code, answer.text


def test_a_model_that_failed_to_load_is_a_banner_in_the_servers_words(
    browser: Any, broken_server: str
) -> None:
    with open_page(browser, broken_server) as page:
        page.wait_for_selector("#model-banner:not([hidden])")
        detail = httpx.get(f"{broken_server}/readyz").json()["detail"]
        assert detail.startswith("the model failed to load") and "broken.pt" in detail
        assert (
            page.text_content("#model-banner") == detail[0].upper() + detail[1:].rstrip(".") + "."
        )
        assert page.get_attribute("#model-status", "data-state") == "failed"
        assert "busy" not in page.inner_text("body").lower()

        # Opening an image meets the same 503: the banner stays, no "busy" message appears.
        page.click("button[data-sample=coffee]")
        page.wait_for_function(
            "() => document.getElementById('encode-status').textContent.startsWith('No image')"
        )
        assert page.is_hidden("#error") and page.is_visible("#model-banner")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "demo_failed_model.png")


def test_loading_then_ready_and_busy_told_apart(page: Any) -> None:
    status, body = still_loading()
    assert status == 503 and json.loads(body)["detail"].startswith("the model is still loading")
    answered: list[str] = []

    def readyz(route: Any) -> None:
        # The first check hears the loading service's answer; the page asks again by itself.
        if not answered:
            answered.append("loading")
            route.fulfill(status=status, body=body, content_type="application/json")
        else:
            answered.append("ready")
            route.continue_()

    page.route("**/readyz", readyz)
    page.reload()
    page.wait_for_function(
        "() => document.getElementById('model-status').dataset.state === 'loading'"
    )
    assert page.inner_text("#model-status") == "Loading the model\N{HORIZONTAL ELLIPSIS}"
    page.wait_for_function(
        "() => document.getElementById('model-status').dataset.state === 'ready'"
    )
    assert answered[:2] == ["loading", "ready"]
    assert page.is_hidden("#model-banner")

    # A busy 503 is worded as busy, with its Retry-After; the model stays ready.
    page.route(
        "**/embed",
        lambda route: route.fulfill(
            status=503, body=json.dumps(BUSY), headers={"Retry-After": "3"},
            content_type="application/json",
        ),
    )  # fmt: skip
    page.click("button[data-sample=coffee]")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error-text") == f"The server is busy: {BUSY['detail']} (retry in 3 s)."
    assert page.get_attribute("#model-status", "data-state") == "ready"

    # A "still loading" 503 of a model call is not busy: the page waits for /readyz again.
    page.unroute("**/embed")
    page.route(
        "**/embed",
        lambda route: route.fulfill(status=status, body=body, content_type="application/json"),
    )
    page.click("#error-close")
    page.click("button[data-sample=coffee]")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error-text").startswith("The model is still loading")
    page.wait_for_function(
        "() => document.getElementById('model-status').dataset.state === 'ready'"
    )


def test_favicon_and_nothing_missing_on_load(page: Any, server: str) -> None:
    failed: list[str] = []
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
    page.reload()
    page.wait_for_function(
        "() => document.getElementById('model-status').dataset.state === 'ready'"
    )
    page.wait_for_selector("button[data-sample=coffee]")
    assert failed == []
    icon = page.get_attribute("link[rel=icon]", "href")
    for path in (icon, "/favicon.ico"):
        answer = page.request.get(path)
        assert answer.status == 200, path
        assert answer.headers["content-type"].startswith("image/svg+xml")
        assert answer.body().lstrip().startswith(b"<svg")


def test_the_spinner_does_not_cover_the_drop_zone_text(labeller: Any) -> None:
    page = labeller
    held: list[Any] = []
    page.route(
        "**/embed", lambda route: held.append(route)
    )  # answered below, once the spinner has been looked at
    page.click("button[data-sample=coffee]")
    page.wait_for_selector("#spinner:not([hidden])")
    spinner = page.locator("#spinner span").bounding_box()
    hint = page.locator("#drop-hint")
    if hint.is_visible():
        box = hint.bounding_box()
        apart = (
            spinner["x"] + spinner["width"] <= box["x"] or box["x"] + box["width"] <= spinner["x"]
        ) or (
            spinner["y"] + spinner["height"] <= box["y"] or box["y"] + box["height"] <= spinner["y"]
        )
        assert apart, "the spinner's text lies over the drop-zone text"
    held[0].continue_()
    page.unroute("**/embed")
    page.wait_for_function("() => document.getElementById('overlay').dataset.image")
    assert page.is_hidden("#spinner")


def test_the_box_outline_has_two_tones(labeller: Any) -> None:
    page = labeller
    open_sample(page)
    drag_box(page, 150, 100, 450, 320)
    strokes = page.eval_on_selector_all(
        "#prompts rect",
        "rects => rects.map(r => [getComputedStyle(r).stroke, r.getAttribute('stroke-width')])",
    )
    assert len(strokes) == 2
    (dark, dark_width), (light, light_width) = strokes
    luminance = [sum(int(v) for v in c[4:-1].split(",")[:3]) for c in (dark, light)]
    assert luminance[0] < 100 and luminance[1] > 600, strokes
    assert float(dark_width) > float(light_width)  # the dark halo shows on both sides


def test_everything_mode_says_when_no_mask_passed_and_what_to_lower(labeller: Any) -> None:
    page = labeller
    open_sample(page)
    page.click("details summary")
    page.fill("#points-per-side", "4")  # the default thresholds: 0.88 and 0.95
    with page.expect_response(lambda r: r.url.endswith("/masks")) as info:
        page.check("input[name=view][value=everything]")
    assert info.value.status == 200 and info.value.json()["masks"] == []
    page.wait_for_selector("#view-status:not([hidden])")
    message = page.inner_text("#view-status")
    assert message.startswith("No mask passed the filters: lower")
    assert "predicted IoU threshold (now 0.88)" in message
    assert "stability threshold (now 0.95)" in message
    page.screenshot(path=ARTIFACTS / "demo_everything_empty.png")

    # Only the filter that is on is named; with masks the message goes.
    page.fill("#stability-score-thresh", "0")
    with page.expect_response(lambda r: r.url.endswith("/masks")):
        page.press("#stability-score-thresh", "Tab")
    page.wait_for_function(
        "() => !document.getElementById('view-status').textContent.includes('stability')"
    )
    if page.is_visible("#view-status"):
        assert "predicted IoU threshold (now 0.88)" in page.inner_text("#view-status")
    page.fill("#pred-iou-thresh", "0")
    with page.expect_response(lambda r: r.url.endswith("/masks")) as info:
        page.press("#pred-iou-thresh", "Tab")
    assert info.value.json()["masks"], "no mask even with the filters off"
    page.wait_for_selector("#view-status", state="hidden")
