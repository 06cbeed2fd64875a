"""The web demo as a labeller's tool, in headless Chromium against a real ``repvit-sam serve``:
several objects labelled, shown, hidden, reopened and exported (COCO JSON decoded with
pycocotools, the label PNG read with Pillow), and refinement from the candidate on screen."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from tests.comparisons import LOGIT_ATOL
from tests.demo.browser import (
    API_KEY,
    ARTIFACTS,
    MIN_AGREEMENT,
    agreement,
    click,
    download,
    drag_box,
    open_sample,
    overlay_mask,
    selected_index,
    selected_mask,
)


def objects_listed(page: Any) -> list[str]:
    """The labels of the object list, in order."""
    return page.eval_on_selector_all(
        "#object-list li input[type=text]", "inputs => inputs.map(i => i.value)"
    )


def test_two_objects_labelled_and_exported_as_coco(labeller: Any) -> None:
    page = labeller
    open_sample(page)

    # Object 1, "cup": a click, another candidate than the best (m), Enter in the label field.
    _, first = click(page, 300, 200)
    page.keyboard.press("m")
    cup = selected_mask(page, first)
    page.fill("#object-label", "cup")
    page.press("#object-label", "Enter")
    page.wait_for_function("() => document.querySelectorAll('#object-list li').length === 1")
    assert objects_listed(page) == ["cup"]
    assert overlay_mask(page).sum() == cup.sum()  # finished objects stay on screen

    # Object 2, "saucer": a box after Finish starts a new prompt, not a refinement of the cup.
    page.fill("#object-label", "saucer")
    request, second = drag_box(page, 60, 260, 330, 395)
    assert request["points"] == [] and len(request["boxes"]) == 1
    assert "mask_input_id" not in request
    # The label typed, a press on the image makes the keys shortcuts again: m is a candidate.
    before = selected_index(page)
    page.keyboard.press("m")
    assert selected_index(page) != before
    assert page.input_value("#object-label") == "saucer"
    saucer = selected_mask(page, second)
    page.click("#finish-object")
    page.wait_for_function("() => document.querySelectorAll('#object-list li').length === 2")
    assert objects_listed(page) == ["cup", "saucer"]
    assert 0 < (cup | saucer).sum() < cup.size, "the test's masks are empty or full"
    assert (cup & ~saucer).any() and saucer.any(), "one mask hides the other: a weak test"
    assert agreement(overlay_mask(page), cup | saucer) >= MIN_AGREEMENT
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "demo_objects.png")

    # COCO JSON: one annotation per object, its chosen candidate, its label as the category.
    coco = COCO(str(download(page, "#download-coco", "demo_objects_coco.json")))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["cup", "saucer"]
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert len(annotations) == 2
    for annotation, mask, name in zip(annotations, (cup, saucer), ("cup", "saucer"), strict=True):
        assert coco.cats[annotation["category_id"]]["name"] == name
        np.testing.assert_array_equal(coco.annToMask(annotation).astype(bool), mask)
        assert annotation["area"] == mask.sum() and annotation["iscrowd"] == 0
        ys, xs = np.nonzero(mask)
        assert annotation["bbox"] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]

    # The label image: single channel, value k where object k is (the later one on top).
    with Image.open(download(page, "#download-labels", "demo_objects_labels.png")) as saved:
        assert saved.mode == "L" and saved.size == (600, 400)
        labels = np.asarray(saved)
    np.testing.assert_array_equal(labels == 2, saucer)
    np.testing.assert_array_equal(labels == 1, cup & ~saucer)
    assert not labels[~(cup | saucer)].any()

    # Hidden objects leave the overlay (not the exports); a deleted one leaves the list.
    page.uncheck("#object-list li[data-object-id='1'] input[type=checkbox]")
    assert agreement(overlay_mask(page), saucer) >= MIN_AGREEMENT
    page.click("#object-list li[data-object-id='2'] [data-action=delete]")
    assert objects_listed(page) == ["cup"]
    assert not overlay_mask(page).any()


def test_a_finished_object_reopens_with_its_prompts(labeller: Any) -> None:
    page = labeller
    open_sample(page)
    _, answer = click(page, 300, 200)
    page.keyboard.press("m")
    chosen = selected_index(page)
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#object-list li').length === 1")
    assert not page.get_attribute("#overlay", "data-logits-id")  # a new, empty object

    # Edit: its mask, candidate and prompts are back; a click refines it from that candidate.
    page.click("#object-list [data-action=edit]")
    assert page.get_attribute("#overlay", "data-logits-id") == answer["logits_id"]
    assert selected_index(page) == chosen
    page.check("#refine")
    request, refined = click(page, 330, 220)
    assert len(request["points"]) == 2 and request["labels"] == [1, 1]
    assert request["mask_input_id"] == answer["logits_id"]
    assert request["mask_input_index"] == chosen
    shown = selected_mask(page, refined)
    page.click("#finish-object")
    assert objects_listed(page) == ["object"]  # stored again in its place, not added
    assert agreement(overlay_mask(page), shown) >= MIN_AGREEMENT


def refined_logits(server: str, body: dict[str, Any]) -> np.ndarray:
    """The low-res logits of the answer to ``body``, asked of the service directly."""
    headers = {"X-API-Key": API_KEY}
    answer = httpx.post(f"{server}/segment", json=body, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    logits = httpx.get(f"{server}/logits/{answer.json()['logits_id']}", headers=headers)
    return np.load(io.BytesIO(logits.content))


def test_refinement_starts_from_the_candidate_on_screen(labeller: Any, server: str) -> None:
    page = labeller
    open_sample(page)
    _, answer = click(page, 300, 200)
    best = int(np.argmax([m["score"] for m in answer["masks"]]))
    page.keyboard.press("m")  # the next by score: not the one mask_input_id alone refines
    chosen = selected_index(page)
    assert chosen != best

    page.check("#refine")
    request, refined = click(page, 320, 210)
    assert request["mask_input_id"] == answer["logits_id"] and request["mask_input_index"] == chosen
    assert agreement(overlay_mask(page), selected_mask(page, refined)) >= MIN_AGREEMENT

    # The same request again gives the page's answer; without the index (the best candidate)
    # it gives another, so the index is what made the difference.
    shown = refined_logits(server, request)
    default = {k: v for k, v in request.items() if k != "mask_input_index"}
    from_best = refined_logits(server, default)
    page_logits = httpx.get(
        f"{server}/logits/{refined['logits_id']}", headers={"X-API-Key": API_KEY}
    )
    np.testing.assert_allclose(np.load(io.BytesIO(page_logits.content)), shown, atol=LOGIT_ATOL)
    assert np.abs(shown - from_best).max() > 10 * LOGIT_ATOL, "the candidates refine alike"


ENCODE_PNG = """async ([values, width, height, depth]) => {
  const { grayPng } = await import("/static/js/png.js");
  const typed = depth === 16 ? Uint16Array.from(values) : Uint8Array.from(values);
  const bytes = new Uint8Array(await (await grayPng(typed, width, height, depth)).arrayBuffer());
  return btoa(String.fromCharCode(...bytes));
}"""


@pytest.mark.parametrize("depth", [8, 16])
def test_the_page_writes_single_channel_pngs_that_pillow_reads(page: Any, depth: int) -> None:
    # 16-bit is the label image's format beyond 255 objects.
    rng = np.random.default_rng(depth)
    values = rng.integers(0, 2**depth, size=(37, 53))
    encoded = page.evaluate(ENCODE_PNG, [values.ravel().tolist(), 53, 37, depth])
    with Image.open(io.BytesIO(base64.b64decode(encoded))) as png:
        png.load()  # checks every chunk's CRC and the zlib stream
        assert png.size == (53, 37) and png.mode == ("L" if depth == 8 else "I;16")
        np.testing.assert_array_equal(np.asarray(png).astype(np.int64), values)
