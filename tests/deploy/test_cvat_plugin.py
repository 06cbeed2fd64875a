"""``export-onnx --cvat``'s decoder run the way CVAT's SAM plugin runs it.

onnxruntime-web from npm, in a dedicated worker of headless Chromium (Debian's, through
Playwright, as tests/demo), fed as the plugin feeds it (tests/deploy/cvat_plugin: the embedding
from the SAM function's base64 blob, clicks scaled to 1024, a box as points labelled 2 and 3,
``orig_im_size``, the previous low-res mask as ``mask_input``): the cropped mask placed at
(xtl, ytl) must be our Predictor's mask, and xtl, ytl, xbr, ybr its bounds.

Needs npm (the registry) and Chromium; skipped where either is missing. About 40 s here, most
of it the first ``npm install`` (npm's cache serves later ones) and the 1024 model.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from repvit_sam import Predictor, build_repvit_sam
from repvit_sam.onnx_export import export_decoder
from tests.demo.browser import CHROMIUM_ARGS, find_chromium

ONNXRUNTIME_WEB = "onnxruntime-web@1.30.0"
HARNESS = Path(__file__).resolve().parent / "cvat_plugin"
WIDTH, HEIGHT = 400, 300  # 1024 / 400 = 2.56 scales both sides exactly, as SAM's resize does
MIN_AGREEMENT = 0.999


@pytest.fixture(scope="module")
def onnxruntime_web(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """onnxruntime-web's dist folder, installed from the npm registry into a temp folder."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm not installed (apt-get install -y npm)")
    prefix = tmp_path_factory.mktemp("npm")
    command = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund"]
    subprocess.run([*command, "--ignore-scripts", ONNXRUNTIME_WEB], check=True, timeout=300)
    return prefix / "node_modules" / "onnxruntime-web" / "dist"


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """m0_9 at 1024 (the plugin assumes SAM's 1024 input and 64x64 embeddings), random weights
    with sharpened mask logits so that masks have edges."""
    torch.manual_seed(0)
    sam = build_repvit_sam(variant="m0_9")
    with torch.no_grad():
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(20)
    return sam.eval()


@pytest.fixture(scope="module")
def ours(model) -> tuple[Predictor, Any]:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    image = np.stack([x * 0.5, y * 0.6, (x + y) * 0.3], axis=-1).astype(np.uint8)
    image[70:230, 100:300] = (250, 240, 30)
    predictor = Predictor(model)
    return predictor, predictor.embed(image)


@pytest.fixture(scope="module")
def site(onnxruntime_web, model, ours, tmp_path_factory) -> Iterator[str]:
    """A loopback HTTP server with the plugin's layout: /assets/ holds onnxruntime-web's files
    and decoder.onnx (the plugin sets ``env.wasm.wasmPaths = '/assets/'``)."""
    root = tmp_path_factory.mktemp("site")
    (root / "assets").mkdir()
    for name in ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"):
        (root / "assets" / name).symlink_to(onnxruntime_web / name)
    export_decoder(model, root / "assets" / "decoder.onnx", cvat=True)
    for name in ("index.html", "worker.js"):
        shutil.copy(HARNESS / name, root / name)
    blob = base64.b64encode(ours[1].numpy().astype("<f4").tobytes()).decode()
    (root / "blob.json").write_text(json.dumps({"blob": blob}))

    class Handler(http.server.SimpleHTTPRequestHandler):
        extensions_map: ClassVar[dict[str, str]] = {
            ".mjs": "text/javascript",
            ".js": "text/javascript",
            ".wasm": "application/wasm",
            ".json": "application/json",
            ".html": "text/html",
            ".onnx": "application/octet-stream",
        }

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def page(site) -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="needs Playwright's Python package (pip install -e '.[dev]')"
    )
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found (apt-get install -y chromium, or REPVIT_SAM_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        opened = browser.new_page()
        opened.set_default_timeout(120_000)
        opened.goto(f"{site}/index.html")
        yield opened
        browser.close()


def decode(page: Any, **case: Any) -> tuple[np.ndarray, tuple[int, int, int, int], float]:
    """The plugin's decode of a prompt -> the HxW mask it draws, its box, decoder ms."""
    case = {"box": None, "positive": [], "negative": [], "padding": False, "refine": False, **case}
    answer = page.evaluate("(c) => runCase(c)", {**case, "width": WIDTH, "height": HEIGHT})
    xtl, ytl, xbr, ybr = answer["xtl"], answer["ytl"], answer["xbr"], answer["ybr"]
    crop = np.frombuffer(base64.b64decode(answer["mask"]), np.uint8)
    assert answer["dims"] == [1, 1, ybr - ytl + 1, xbr - xtl + 1]  # what the plugin assumes
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[ytl : ybr + 1, xtl : xbr + 1] = crop.reshape(ybr - ytl + 1, xbr - xtl + 1) > 0
    return mask, (xtl, ytl, xbr, ybr), answer["milliseconds"]


def bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def check(mask: np.ndarray, box: tuple[int, ...], expected: np.ndarray) -> None:
    assert 0.001 < expected.mean() < 0.999, "an empty or full mask proves little"
    assert float((mask == expected).mean()) >= MIN_AGREEMENT
    assert box == bounds(mask)  # the box is the drawn mask's bounds, exactly
    np.testing.assert_allclose(box, bounds(expected), atol=1)


def test_clicks_with_the_padding_point_of_the_plugins_earlier_releases(page, ours):
    predictor, embedding = ours
    # One click (+ padding): SAM's single-mask rule takes the best of the three candidates.
    mask, box, _ = decode(page, positive=[[200, 150]], padding=True)
    masks, scores, _ = predictor.predict(
        np.array([[200, 150]]), np.array([1]), multimask_output=True, embedding=embedding
    )
    check(mask, box, masks[int(np.argmax(scores))])

    # Two clicks (+ padding): the single-mask output, as our Predictor's (which pads too).
    mask, box, _ = decode(page, positive=[[200, 150]], negative=[[40, 260]], padding=True)
    masks, _, _ = predictor.predict(
        np.array([[200, 150], [40, 260]]), np.array([1, 0]), multimask_output=False,
        embedding=embedding,
    )  # fmt: skip
    check(mask, box, masks[0])


def test_box_clicks_and_the_previous_mask_as_the_current_plugin_sends_them(page, ours):
    predictor, embedding = ours
    box_prompt = [90, 60, 310, 240]
    mask, box, _ = decode(page, box=box_prompt, positive=[[200, 150]])
    masks, _, logits = predictor.predict(
        np.array([[200, 150]]), np.array([1]), np.array(box_prompt), multimask_output=False,
        embedding=embedding,
    )  # fmt: skip
    check(mask, box, masks[0])

    # The next click extends the last ones: the plugin sends the previous low-res mask.
    mask, box, _ = decode(
        page, box=box_prompt, positive=[[200, 150]], negative=[[20, 20]], refine=True
    )
    masks, _, _ = predictor.predict(
        np.array([[200, 150], [20, 20]]), np.array([1, 0]), np.array(box_prompt),
        mask_input=logits, multimask_output=False, embedding=embedding,
    )  # fmt: skip
    check(mask, box, masks[0])
