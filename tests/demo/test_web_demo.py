"""The web demo at ``GET /`` in headless Chromium, against a real ``repvit-sam serve``.

Drives Debian's ``chromium`` through Playwright's Python package (no browser download):
open a sample photo, click, compare the overlay's pixels with the mask ``/segment`` answered,
draw a box, run everything mode, download the COCO JSON and decode it with pycocotools, and
check that server errors show as messages. Screenshots go to ``tests/demo/artifacts/``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from repvit_sam import build_repvit_sam
from tests.process_helpers import TEST_IMAGE_SIZE, TEST_VARIANT, ServeProcess

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="needs Playwright's Python package (pip install -e '.[dev]')"
)

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
API_KEY = "demo-key"
MAX_PIXELS = 300_000  # the samples fit (coffee is 600x400); a 700x500 upload does not
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


def find_chromium() -> str | None:
    candidates = [os.environ.get("REPVIT_SAM_CHROMIUM"), "/usr/bin/chromium"]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random m0_9 model at 256 input with sharpened mask logits, so masks have edges."""
    torch.manual_seed(0)
    model = build_repvit_sam(variant=TEST_VARIANT, image_size=TEST_IMAGE_SIZE)
    with torch.no_grad():
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(20)
    path = tmp_path_factory.mktemp("demo") / "random_m0_9.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def server(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    serve = ServeProcess(
        checkpoint,
        tmp_path_factory.mktemp("serve") / "serve.log",
        REPVIT_SAM_API_KEY=API_KEY,
        REPVIT_SAM_MAX_PIXELS=str(MAX_PIXELS),
    )
    serve.start("--host", "127.0.0.1")
    try:
        serve.wait_ready(timeout=90)
        yield serve.base
    finally:
        serve.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = find_chromium()
    if executable is None:
        pytest.skip(
            "no Chromium found: install Debian's chromium (apt-get install -y chromium) or set "
            "REPVIT_SAM_CHROMIUM to a Chromium binary"
        )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    context = browser.new_context(
        base_url=server, viewport={"width": 1280, "height": 800}, accept_downloads=True
    )
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    crashes: list[str] = []
    opened.on("pageerror", lambda err: crashes.append(str(err)))
    # The page's Content-Security-Policy must not block anything the page itself does.
    opened.on(
        "console",
        lambda m: "Content Security Policy" in m.text and crashes.append(m.text),
    )
    yield opened
    context.close()
    assert not crashes, f"errors in the page: {crashes}"


# ---- helpers ---------------------------------------------------------------------------

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


def overlay_mask(page: Any) -> np.ndarray:
    """HxW bool: the overlay canvas's non-transparent pixels."""
    width, height, data = page.evaluate(OVERLAY_ALPHA)
    return np.frombuffer(base64.b64decode(data), np.uint8).reshape(height, width).astype(bool)


def decode(rle: dict[str, Any]) -> np.ndarray:
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
    return box["x"] + (x + 0.5) * box["width"] / width, box["y"] + (y + 0.5) * box[
        "height"
    ] / height


def segment_after(page: Any, action: Any) -> tuple[dict[str, Any], dict[str, Any]]:
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


def selected_mask(page: Any, answer: dict[str, Any]) -> np.ndarray:
    index = int(page.get_attribute("#overlay", "data-mask-index"))
    return decode(answer["masks"][index]["segmentation"])


def png_bytes(width: int, height: int) -> bytes:
    stream = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 200)).save(stream, format="PNG")
    return stream.getvalue()


# ---- the test --------------------------------------------------------------------------


def test_click_box_everything_and_errors_in_chromium(page: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto("/")
    assert page.title() == "RepViT-SAM demo"

    # Without the key the server refuses, and the page says what to do.
    page.click("button[data-sample=coffee]")
    page.wait_for_selector("#error:not([hidden])")
    assert "API key" in page.inner_text("#error-text")

    # With it, the sample is encoded and shown at its natural size.
    page.fill("#api-key", API_KEY)
    page.click("button[data-sample=coffee]")
    page.wait_for_function("() => document.getElementById('overlay').dataset.image")
    assert page.is_hidden("#error")
    assert "600\N{MULTIPLICATION SIGN}400, encoded in" in page.inner_text("#encode-status")
    assert page.evaluate("() => document.getElementById('overlay').width") == 600

    # A click: the overlay is exactly the selected candidate of the answer, and 'm' cycles.
    request, answer = segment_after(page, lambda: page.mouse.click(*screen_point(page, 300, 200)))
    assert request["labels"] == [1] and request["multimask"] is True
    np.testing.assert_allclose(request["points"], [[300, 200]], atol=1.0)
    assert len(answer["masks"]) == 3
    nontrivial = 0
    for _ in range(3):
        expected = selected_mask(page, answer)
        assert agreement(overlay_mask(page), expected) >= MIN_AGREEMENT
        nontrivial += 0 < expected.sum() < expected.size
        page.keyboard.press("m")
    assert nontrivial > 0, "every candidate mask is empty or full: the comparison proves little"
    assert "decode:" in page.inner_text("#timings")
    page.screenshot(path=ARTIFACTS / "demo_point.png")

    # The mask PNG download is the mask on screen.
    with page.expect_download() as download:
        page.click("#download-png")
    png = np.asarray(Image.open(download.value.path()).convert("L")) > 127
    assert agreement(png, selected_mask(page, answer)) == 1.0

    # Right click: a negative point; z: undo it.
    request, _ = segment_after(
        page, lambda: page.mouse.click(*screen_point(page, 100, 80), button="right")
    )
    assert request["labels"] == [1, 0]
    request, answer = segment_after(page, lambda: page.keyboard.press("z"))
    assert request["labels"] == [1]

    # Refining sends the previous answer's logits with the next click.
    page.check("#refine")
    request, _ = segment_after(page, lambda: page.mouse.click(*screen_point(page, 320, 210)))
    assert request["mask_input_id"] == answer["logits_id"]
    page.uncheck("#refine")

    # A drag: a box prompt, drawn exactly too.
    def drag() -> None:
        page.mouse.move(*screen_point(page, 150, 100))
        page.mouse.down()
        page.mouse.move(*screen_point(page, 450, 320), steps=5)
        page.mouse.up()

    request, answer = segment_after(page, drag)
    np.testing.assert_allclose(request["boxes"], [[150, 100, 450, 320]], atol=1.0)
    assert agreement(overlay_mask(page), selected_mask(page, answer)) >= MIN_AGREEMENT

    # Everything mode with permissive filters: every mask in the overlay, COCO JSON downloads.
    page.click("details summary")
    page.fill("#points-per-side", "6")
    page.fill("#pred-iou-thresh", "0")
    page.fill("#stability-score-thresh", "0")
    page.fill("#box-nms-thresh", "0.99")
    with page.expect_response(lambda r: r.url.endswith("/masks")) as info:
        page.check("input[name=view][value=everything]")
    assert info.value.status == 200, info.value.text()
    records = info.value.json()["masks"]
    assert len(records) > 1, "fewer than 2 masks even with the filters off"
    page.wait_for_function(
        "n => document.getElementById('overlay').dataset.maskCount === String(n)",
        arg=len(records),
    )
    union = np.any([decode(r["segmentation"]) for r in records], axis=0)
    assert agreement(overlay_mask(page), union) >= MIN_AGREEMENT
    page.screenshot(path=ARTIFACTS / "demo_everything.png")

    with page.expect_download() as download:
        page.click("#download-coco")
    coco_path = ARTIFACTS / "demo_coco.json"
    download.value.save_as(coco_path)
    coco = COCO(str(coco_path))
    assert coco.imgs[1]["width"] == 600 and coco.imgs[1]["height"] == 400
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert len(annotations) == len(records)
    for annotation in annotations:
        assert coco.annToMask(annotation).sum() == annotation["area"]

    # Edges: the edge map replaces the overlay.
    page.fill("#edge-points-per-side", "3")
    with page.expect_response(lambda r: r.url.endswith("/edges")) as info:
        page.check("input[name=view][value=edges]")
    assert info.value.status == 200
    page.wait_for_function(
        "() => document.getElementById('timings').textContent.includes('edges:')"
    )

    # Server errors are messages on the page; the image stays. A dropped file that is no image:
    dropped = page.evaluate_handle(
        """() => {
          const data = new DataTransfer();
          data.items.add(new File(["hello"], "notes.png", { type: "image/png" }));
          return data;
        }"""
    )
    page.dispatch_event("#stage-area", "drop", {"dataTransfer": dropped})
    page.wait_for_selector("#error:not([hidden])")
    assert "HTTP 422" in page.inner_text("#error-text")
    page.click("#error-close")
    page.set_input_files(
        "#file-input",
        files=[{"name": "big.png", "mimeType": "image/png", "buffer": png_bytes(700, 500)}],
    )
    page.wait_for_selector("#error:not([hidden])")
    assert "Too large" in page.inner_text("#error-text")
    assert "Still showing coffee.jpg" in page.inner_text("#encode-status")
    page.screenshot(path=ARTIFACTS / "demo_error.png")

    # On a large screen the image grows to fill the window, and stays inside it.
    page.click("#error-close")
    page.check("input[name=view][value=prompt]")
    for width, height in [(1920, 1080), (1024, 700)]:
        page.set_viewport_size({"width": width, "height": height})
        page.evaluate(AFTER_NEXT_FRAME)  # fitStage runs from a ResizeObserver: let it
        box = page.locator("#image-canvas").bounding_box()
        assert box["x"] + box["width"] <= width and box["y"] + box["height"] <= height
        assert box["width"] >= 0.5 * (width - 360) or box["height"] >= 0.5 * height
        assert agreement(overlay_mask(page), selected_mask(page, answer)) >= MIN_AGREEMENT
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.screenshot(path=ARTIFACTS / "demo_large.png")
