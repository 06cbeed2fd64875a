"""Uploads decoded a few at a time: a request that left while waiting never decodes."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from service_helpers import encode, make_image

from repvit_sam_server import image_decoding
from repvit_sam_server.image_decoding import ImageDecoder

pytestmark = pytest.mark.anyio


async def test_decodes_run_at_most_max_concurrent_and_a_waiter_that_left_never_decodes(
    monkeypatch,
):
    release = threading.Event()
    started: list[bytes] = []

    def slow_load(data: bytes, *, max_pixels: int) -> np.ndarray:
        started.append(data)
        release.wait(10)
        return np.zeros((2, 2, 3), np.uint8)

    monkeypatch.setattr(image_decoding, "load_image", slow_load)
    decoder = ImageDecoder(max_pixels=100, max_concurrent=2)
    calls = [asyncio.ensure_future(decoder.decode(bytes([i]))) for i in range(5)]
    while len(started) < 2:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert decoder.running == 2 and len(started) == 2
    for call in calls[1:]:  # their clients went away: one running, three waiting
        call.cancel()
    await asyncio.sleep(0.05)
    # The running one that was left keeps its slot until its decode ends.
    assert decoder.running == 2 and len(started) == 2
    release.set()
    assert (await calls[0]).shape == (2, 2, 3)
    while decoder.running:
        await asyncio.sleep(0.01)
    assert started == [b"\x00", b"\x01"]  # the three that left while waiting never decoded
    assert all(call.cancelled() for call in calls[1:])


async def test_a_decode_error_frees_its_slot():
    decoder = ImageDecoder(max_pixels=100, max_concurrent=1)
    with pytest.raises(Exception, match="pixels"):
        await decoder.decode(encode(make_image(20, 10)))  # 200 pixels, over 100
    assert decoder.running == 0
    assert (await decoder.decode(encode(make_image(10, 5)))).shape == (5, 10, 3)
