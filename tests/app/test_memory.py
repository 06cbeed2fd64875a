"""The documented bound on the memory one request takes, measured as the peak RSS
(``VmHWM``) of a real ``repvit-sam serve`` process.

The README's bound: decoding an upload takes at most about 9 bytes per pixel (PIL's RGBX image
and the RGB array), at most ``MAX_CONCURRENT_IMAGE_DECODES`` decodes run at once, and a
/segment request draws its masks within ``MASK_DRAWING_BYTES`` of float logits at a time.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from service_helpers import encode

from repvit_sam_server.segmentation import MASK_DRAWING_BYTES
from tests.process_helpers import ServeProcess

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/<pid>/status")

WIDTH, HEIGHT = 2000, 2000
PIXELS = WIDTH * HEIGHT
# What else a request allocates (the multipart body, the embedding, answers), and the noise of
# a Python process's heap.
SLACK = 40 << 20


def _peak_rss(server: ServeProcess) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def _image(value: int) -> bytes:
    """A large image that compresses to a few kilobytes (the decompression-bomb shape)."""
    pixels = np.full((HEIGHT, WIDTH, 3), value, np.uint8)
    pixels[500:1500, 600:1400] = 255 - value
    return encode(pixels)


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory) -> Iterator[ServeProcess]:
    process = ServeProcess(
        checkpoint,
        tmp_path_factory.mktemp("memory") / "serve.log",
        REPVIT_SAM_MAX_PIXELS=str(PIXELS),
    )
    with process.ready():
        # Every code path once (imports, allocator pools), on a small image.
        small = httpx.post(
            f"{process.base}/embed",
            files={"image": ("s.png", encode(np.zeros((64, 64, 3), np.uint8)))},
            timeout=60,
        )
        body = {
            "embedding_id": small.json()["embedding_id"],
            "boxes": [[0, 0, 30, 30]],
            "format": "polygons",
        }
        assert httpx.post(f"{process.base}/segment", json=body, timeout=60).status_code == 200
        yield process


def test_an_upload_takes_at_most_about_9_bytes_per_pixel(server):
    before = _peak_rss(server)
    answer = httpx.post(f"{server.base}/embed", files={"image": ("a.png", _image(40))}, timeout=120)
    assert answer.status_code == 200, answer.text
    added = _peak_rss(server) - before
    assert added <= 9 * PIXELS + SLACK, f"{added / PIXELS:.1f} bytes per pixel"


def test_a_polygons_answer_draws_within_mask_drawing_bytes(server):
    embedded = httpx.post(
        f"{server.base}/embed", files={"image": ("b.png", _image(80))}, timeout=120
    )
    body = {
        "embedding_id": embedded.json()["embedding_id"],
        "boxes": [[100 * i, 100 * i, 100 * i + 900, 100 * i + 900] for i in range(8)],
        "multimask": True,
        "format": "polygons",
    }
    before = _peak_rss(server)
    answer = httpx.post(f"{server.base}/segment", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["masks"]) == 24
    added = _peak_rss(server) - before
    # 24 full-size masks as float32 would be 384 MB; drawn a few prompts at a time they stay
    # within MASK_DRAWING_BYTES, plus the bool masks of one chunk.
    assert added <= MASK_DRAWING_BYTES + SLACK, f"{added >> 20} MiB"
