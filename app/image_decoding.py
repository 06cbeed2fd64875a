"""``ImageDecoder``: uploaded images decoded a few at a time, off the event loop.

A small upload can decode to gigabytes (a 14 KB PNG of 7000x7000 pixels takes 425 MB while
PIL decodes it), so decodes are bounded in number, and the bound is what bounds their memory.
A decode waits for its slot on the event loop, where a request whose client went away is
cancelled: it never starts decoding. Once started, a decode runs to its end on its worker
thread (PIL cannot be interrupted) and keeps its slot until then, even if its caller left.
"""

from __future__ import annotations

import asyncio

import numpy as np

from repvit_sam import load_image


class ImageDecoder:
    """Decodes encoded image bytes to HxWx3 uint8 RGB, ``max_concurrent`` at once.

    Args:
        max_pixels: Larger images are refused before decoding (``load_image``'s bound).
        max_concurrent: Decodes running at once.
    """

    def __init__(self, max_pixels: int, max_concurrent: int) -> None:
        self.max_pixels = max_pixels
        self.max_concurrent = max_concurrent
        self._slots = asyncio.Semaphore(max_concurrent)
        self.running = 0

    async def decode(self, data: bytes) -> np.ndarray:
        """The decoded image; waits for a slot first (cancellable until the decode starts)."""
        await self._slots.acquire()
        self.running += 1
        try:
            work = asyncio.ensure_future(
                asyncio.to_thread(load_image, data, max_pixels=self.max_pixels)
            )
        except BaseException:
            self._release()
            raise
        # The slot is freed when the decode ends, not when its caller stops waiting for it. A
        # caller that left never reads the decode's error: reading it here keeps asyncio from
        # logging it as never retrieved.
        work.add_done_callback(lambda done: done.cancelled() or done.exception() or None)
        work.add_done_callback(lambda _: self._release())
        return await asyncio.shield(work)

    def _release(self) -> None:
        self.running -= 1
        self._slots.release()
