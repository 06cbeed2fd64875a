"""A click through the Label Studio adapter against the native /segment, one embedding.

Runs the app in process (httpx ASGI transport), embeds one image, then times one click, one
request at a time, by each route: /segment against the embedding id (the native interactive
path), /segment with the image uploaded, and Label Studio's /label-studio/predict with the image
as a ``data:`` URL (brush RLE, polygons) and served by a loopback stand-in for Label Studio.
Every row reuses the one embedding: the encoder-calls column shows it (0 after the first embed)::

    python benchmarks/adapters.py                  # random-weight m0_9 at 1024
    python benchmarks/adapters.py --checkpoint weights/repvit_sam.pt --variant m2_3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from repvit_sam import build_repvit_sam
from repvit_sam_server import Settings, create_app

WIDTH, HEIGHT = 640, 480
CONFIG = """<View><Image name="image" value="$image"/>
<{tag} name="tag" toName="image"><Label value="Object"/></{tag}>
<KeyPointLabels name="kp" toName="image" smart="true"><Label value="Object"/></KeyPointLabels>
</View>"""


def serve_file(data: bytes) -> tuple[ThreadingHTTPServer, str]:
    """A loopback server answering every GET with ``data`` (a PNG), standing in for Label Studio."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def label_studio_body(url: str, tag: str) -> dict:
    click = {
        "type": "keypointlabels", "to_name": "image", "from_name": "kp", "is_positive": True,
        "original_width": WIDTH, "original_height": HEIGHT,
        "value": {"x": 50.0, "y": 50.0, "keypointlabels": ["Object"]},
    }  # fmt: skip
    return {
        "tasks": [{"id": 1, "data": {"image": url}}],
        "label_config": CONFIG.format(tag=tag),
        "params": {"context": {"result": [click]}},
    }


async def time_calls(call: Callable[[], Awaitable[httpx.Response]], runs: int) -> list[float]:
    await call()  # warm: first-use imports, connection set-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = await call()
        times.append(time.perf_counter() - started)
        if response.status_code != 200:
            sys.exit(f"{response.request.url}: {response.status_code} {response.text[:300]}")
    return times


async def run(args: argparse.Namespace, checkpoint: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    stream = io.BytesIO()
    Image.fromarray(pixels).save(stream, "PNG")
    png = stream.getvalue()
    server, studio = serve_file(png)
    settings = Settings(
        checkpoint=checkpoint,
        variant=args.variant,
        image_size=args.image_size,
        label_studio_url=studio,
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    point = {"points": [[WIDTH / 2, HEIGHT / 2]], "labels": [1], "multimask": True}
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as http,
        ):
            await app.state.load_task
            embedded = (await http.post("/embed", files={"image": ("a.png", png)})).json()
            segment = {"embedding_id": embedded["embedding_id"], **point, "format": "rle"}
            upload = {"request": str(point).replace("'", '"').replace("True", "true")}
            cases: list[tuple[str, Callable[[], Awaitable[httpx.Response]]]] = [
                ("/segment (embedding_id, rle)", lambda: http.post("/segment", json=segment)),
                (
                    "/segment (image uploaded, rle)",
                    lambda: http.post("/segment", files={"image": ("a.png", png)}, data=upload),
                ),
                (
                    "/label-studio/predict (data: URL, brush)",
                    lambda: http.post(
                        "/label-studio/predict", json=label_studio_body(data_url, "BrushLabels")
                    ),
                ),
                (
                    "/label-studio/predict (data: URL, polygons)",
                    lambda: http.post(
                        "/label-studio/predict", json=label_studio_body(data_url, "PolygonLabels")
                    ),
                ),
                (
                    "/label-studio/predict (Label Studio URL, brush)",
                    lambda: http.post(
                        "/label-studio/predict",
                        json=label_studio_body("/data/upload/1/a.png", "BrushLabels"),
                    ),
                ),
            ]
            metrics = app.state.metrics
            rows = []
            for name, call in cases:
                encoder = metrics.model_calls("encoder")
                times = await time_calls(call, args.runs)
                rows.append(
                    (name, statistics.median(times), max(times),
                     metrics.model_calls("encoder") - encoder)
                )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    print(f"{args.variant} at {args.image_size or 1024}, {WIDTH}x{HEIGHT} image, {args.runs} runs")
    print(f"{'route':<48} {'p50 ms':>8} {'max ms':>8} {'x native':>9} {'encoder calls':>14}")
    native = rows[0][1]
    for name, p50, worst, encoder in rows:
        print(
            f"{name:<48} {p50 * 1e3:>8.1f} {worst * 1e3:>8.1f} {p50 / native:>9.2f} {encoder:>14}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="default: random m0_9 weights")
    parser.add_argument("--variant", default="m0_9")
    parser.add_argument("--image-size", type=int, default=None, help="default 1024")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"argument --runs: must be at least 1, got {args.runs}")
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
