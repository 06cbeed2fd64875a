"""Helpers of the headless-Chromium tests of the web demo: finding Debian's ``chromium``, opening
a page that records its errors, reading the overlay canvas, and waiting for ``/segment``.

Imported as ``tests.demo.browser`` (the repository root is on ``sys.path``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
API_KEY = "demo-key"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Every pixel of the overlay that is not transparent must be a mask pixel and vice versa.
MIN_AGREEMENT = 0.99

OVERLAY_ALPHA = """() => {
  const c = document.getElementById("overlay");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  const opaque = new Uint8Array(c.width * c.height);
  for (let i = 0; i < opaque.length; i++) opaque[i] = d[4 * i + 3] > 0 ? 1 : 0;
  let bin = "";
  for (let i = 0; i < opaque.length; i += 8192) {
    bin += String.fromCharCode(...opaque.subarray(i, i + 8192));
  }
  return [c.width, c.height, btoa(bin)];
}"""

# Resolves once a frame has been rendered after this call, and with it the ResizeObserver
# callbacks of that frame: a wait for the page, not for a time.
AFTER_NEXT_FRAME = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


def find_chromium() -> str | None:
    candidates = [os.environ.get("REPVIT_SAM_CHROMIUM"), "/usr/bin/chromium"]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


@contextmanager
def open_page(browser: Any, base_url: str, api_key: str | None = None) -> Iterator[Any]:
    """A page of a fresh context on ``base_url``; fails the test if the page threw or its
    Content-Security-Policy blocked anything the page itself does."""
    context = browser.new_context(
        base_url=base_url, viewport={"width": 1280, "height": 800}, accept_downloads=True
    )
    page = context.new_page()
    page.set_default_timeout(30_000)
    crashes: list[str] = []
    page.on("pageerror", lambda err: crashes.append(str(err)))
    page.on("console", lambda m: "Content Security Policy" in m.text and crashes.append(m.text))
    try:
        page.goto("/")
        if api_key is not None:
            page.fill("#api-key", api_key)
        yield page
    finally:
        context.close()
    assert not crashes, f"errors in the page: {crashes}"


def overlay_mask(page: Any) -> np.ndarray:
    """HxW bool: the overlay canvas's non-transparent pixels."""
    width, height, data = page.evaluate(OVERLAY_ALPHA)
    return np.frombuffer(base64.b64decode(data), np.uint8).reshape(height, width).astype(bool)


def download(page: Any, button: str, name: str) -> Path:
    """Clicks the download ``button`` (a selector) and saves what the page offers as
    ``ARTIFACTS/name``, kept for inspection after the run."""
    with page.expect_download() as offered:
        page.click(button)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    offered.value.save_as(path)
    return path


def decode(rle: dict[str, Any]) -> np.ndarray:
    """HxW bool of a COCO RLE whose counts are a string."""
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float((a == b).mean())


def screen_point(page: Any, x: float, y: float) -> tuple[float, float]:
    """Image pixel (x, y) -> page coordinates of the displayed image."""
    box = page.locator("#image-canvas").bounding_box()
    width, height = page.evaluate(
        "() => [document.getElementById('image-canvas').width, "
        "document.getElementById('image-canvas').height]"
    )
    return (
        box["x"] + (x + 0.5) * box["width"] / width,
        box["y"] + (y + 0.5) * box["height"] / height,
    )


def open_sample(page: Any, name: str = "coffee") -> None:
    """Opens a sample photo and waits until it is encoded and shown."""
    page.click(f"button[data-sample={name}]")
    page.wait_for_function(
        "() => document.getElementById('overlay').dataset.image "
        "&& !document.getElementById('encode-status').textContent.startsWith('Encoding')"
    )


def segment_after(page: Any, action: Callable[[], Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Runs ``action`` and returns the /segment request it caused and the answer once drawn."""
    with page.expect_response(lambda r: r.url.endswith("/segment")) as info:
        action()
    response = info.value
    assert response.status == 200, response.text()
    answer = response.json()
    page.wait_for_function(
        "id => document.getElementById('overlay').dataset.logitsId === id", arg=answer["logits_id"]
    )
    return json.loads(response.request.post_data), answer


def click(page: Any, x: float, y: float, **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A click on image pixel (x, y): the /segment request and its answer, once drawn."""
    return segment_after(page, lambda: page.mouse.click(*screen_point(page, x, y), **options))


def selected_index(page: Any) -> int:
    return int(page.get_attribute("#overlay", "data-mask-index"))


def selected_mask(page: Any, answer: dict[str, Any]) -> np.ndarray:
    return decode(answer["masks"][selected_index(page)]["segmentation"])


def drag_box(page: Any, x0: float, y0: float, x1: float, y1: float) -> tuple[dict, dict]:
    """A drag from image pixel (x0, y0) to (x1, y1): the box's /segment request and answer."""

    def drag() -> None:
        page.mouse.move(*screen_point(page, x0, y0))
        page.mouse.down()
        page.mouse.move(*screen_point(page, x1, y1), steps=5)
        page.mouse.up()

    return segment_after(page, drag)
