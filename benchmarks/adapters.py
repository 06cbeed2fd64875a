"""One click through each tool adapter against the native /segment, on the same embedding.

Runs the app in process (httpx ASGI transport: no network in the measurement), embeds one
image, then times ``--clicks`` one-point clicks, one at a time, through each route the same
click can take, and the bare decoder call they all make::

    python benchmarks/adapters.py                            # random-weight m0_9 at 1024
    python benchmarks/adapters.py --checkpoint weights/repvit_sam.pt --variant m2_3

X-AnyLabeling's client sends the whole image with every click (its protocol has no id), so
its row includes decoding that image and finding its embedding by its pixels; Roboflow's
client names the image by ``image_id`` after ``embed_image``, so its row does not. The last
column counts encoder calls made during the clicks: 0 means every click hit the shared cache.
Random weights make masks of many small regions, hence large polygon answers: their drawing
and serialising cost more than real masks' would (see the answer sizes).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import numpy as np
import torch
from measure import print_table
from PIL import Image

from repvit_sam import build_repvit_sam
from repvit_sam_server import Settings, create_app


def photo_like(width: int, height: int) -> np.ndarray:
    """Smooth shapes with mild noise: compresses like a photo, unlike uniform noise."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack(
        [xs * 255 // width, ys * 255 // height, (xs + ys) * 127 // (width + height)], -1
    )
    image[(xs - width / 2) ** 2 + (ys - height / 2) ** 2 < (height / 4) ** 2] = (200, 40, 40)
    return np.clip(image + rng.integers(0, 8, image.shape), 0, 255).astype(np.uint8)


async def time_clicks(
    call: Callable[[int], Awaitable[httpx.Response]], clicks: int
) -> tuple[list[float], int]:
    """Seconds of each click, and the median size of the answers in bytes."""
    for index in range(3):  # warm-up
        await call(index)
    times, sizes = [], []
    for index in range(clicks):
        started = time.perf_counter()
        response = await call(index)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
        sizes.append(len(response.content))
    return times, int(statistics.median(sizes))


async def run(args: argparse.Namespace, checkpoint: Path) -> None:
    settings = Settings(checkpoint=checkpoint, variant=args.variant, image_size=args.image_size)
    app = create_app(settings)
    stream = io.BytesIO()
    Image.fromarray(photo_like(args.width, args.height)).save(stream, "JPEG", quality=90)
    jpeg = stream.getvalue()
    data_url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=300) as http,
    ):
        await app.state.load_task
        embedded = (await http.post("/embed", files={"image": ("a.jpg", jpeg)})).json()
        embedding_id = embedded["embedding_id"]
        rf_image = {"type": "base64", "value": data_url.split(",", 1)[1]}
        await http.post("/roboflow/sam/embed_image", json={"image": rf_image, "image_id": "b"})

        def point(index: int) -> list[int]:
            return [args.width // 4 + index % 50, args.height // 3 + index % 40]

        def native(fmt: str) -> Callable[[int], Awaitable[httpx.Response]]:
            return lambda i: http.post(
                "/segment",
                json={"embedding_id": embedding_id, "points": [point(i)], "format": fmt},
            )

        def x_anylabeling(i: int) -> Awaitable[httpx.Response]:
            marks = [{"type": "point", "data": point(i), "label": 1}]
            body = {"model": "repvit_sam", "image": data_url, "params": {"marks": marks}}
            return http.post("/x-anylabeling/v1/predict", json=body)

        def roboflow(fmt: str) -> Callable[[int], Awaitable[httpx.Response]]:
            return lambda i: http.post(
                "/roboflow/sam/segment_image",
                json={"image_id": "b", "point_coords": [point(i)], "point_labels": [1],
                      "format": fmt},
            )  # fmt: skip

        service = app.state.service
        embedding = await service.fetch_embedding(embedding_id)

        async def bare(i: int) -> httpx.Response:
            await service.decode(embedding, np.array([point(i)], np.float32),
                                 np.array([1]), None, None, False)  # fmt: skip
            return httpx.Response(200)

        routes = [
            ("POST /segment (rle)", native("rle")),
            ("POST /segment (polygons)", native("polygons")),
            ("POST /x-anylabeling/v1/predict (image each click)", x_anylabeling),
            ("POST /roboflow/sam/segment_image (image_id, json)", roboflow("json")),
            ("POST /roboflow/sam/segment_image (image_id, binary)", roboflow("binary")),
            ("bare decoder (InferenceService.decode)", bare),
        ]
        rows, reference = [], None
        for name, call in routes:
            encodes = app.state.metrics.model_calls("encoder")
            times, size = await time_clicks(call, args.clicks)
            p50 = statistics.median(times)
            reference = p50 if name.startswith("POST /segment (rle)") else reference
            ratio = f"{p50 / reference:.2f}" if reference else "-"
            rows.append([
                name, f"{1000 * p50:.1f}", f"{1000 * float(np.percentile(times, 90)):.1f}",
                ratio, str(size), str(app.state.metrics.model_calls("encoder") - encodes),
            ])  # fmt: skip
    size = f"{args.width}x{args.height} JPEG ({len(jpeg)} bytes)"
    model = f"{args.variant} at {settings.image_size or 1024}"
    print(f"{args.clicks} clicks per route, {size}, {model}, {torch.get_num_threads()} threads")
    print_table(
        ["route", "p50 ms", "p90 ms", "p50 / /segment", "answer bytes", "encoder calls"], rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="default: random m0_9 weights")
    parser.add_argument("--variant", default="m0_9")
    parser.add_argument("--image-size", type=int, default=None, help="default 1024")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=960)
    parser.add_argument("--clicks", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = args.checkpoint
        if checkpoint is None:
            torch.manual_seed(0)
            checkpoint = Path(folder) / "random.pt"
            model = build_repvit_sam(variant=args.variant, image_size=args.image_size)
            torch.save(model.state_dict(), checkpoint)
        asyncio.run(run(args, checkpoint))


if __name__ == "__main__":
    main()
