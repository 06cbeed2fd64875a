"""The web demo at ``GET /`` in headless Chromium, against a real ``repvit-sam serve``.

Drives Debian's ``chromium`` through Playwright's Python package (no browser download):
open a sample photo, click, compare the overlay's pixels with the mask ``/segment`` answered,
draw a box, run everything mode, download the COCO JSON and decode it with pycocotools, and
check that server errors show as messages. Screenshots go to ``tests/demo/artifacts/``.
Objects and their exports: test_web_demo_objects.py; the service's states: test_web_demo_status.py.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from tests.demo.browser import (
    AFTER_NEXT_FRAME,
    API_KEY,
    ARTIFACTS,
    MIN_AGREEMENT,
    agreement,
    decode,
    download,
    overlay_mask,
    screen_point,
    segment_after,
    selected_mask,
)


def png_bytes(width: int, height: int) -> bytes:
    stream = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 200)).save(stream, format="PNG")
    return stream.getvalue()


def test_click_box_everything_and_errors_in_chromium(page: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
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
    with Image.open(download(page, "#download-png", "demo_mask.png")) as saved:
        assert saved.mode == "L", "the mask PNG must be single-channel"
        png = np.asarray(saved)
    assert set(np.unique(png)) <= {0, 255}
    assert agreement(png > 0, selected_mask(page, answer)) == 1.0

    # Right click: a negative point; z: undo it.
    request, _ = segment_after(
        page, lambda: page.mouse.click(*screen_point(page, 100, 80), button="right")
    )
    assert request["labels"] == [1, 0]
    request, answer = segment_after(page, lambda: page.keyboard.press("z"))
    assert request["labels"] == [1]

    # Refining sends the previous answer's logits, and the candidate on screen, with the click.
    chosen = int(page.get_attribute("#overlay", "data-mask-index"))
    page.check("#refine")
    request, _ = segment_after(page, lambda: page.mouse.click(*screen_point(page, 320, 210)))
    assert request["mask_input_id"] == answer["logits_id"]
    assert request["mask_input_index"] == chosen
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

    coco = COCO(str(download(page, "#download-coco", "demo_coco.json")))
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
