"""Load test of /segment: many concurrent calls against one cached embedding, or clicks
beside batch work (``--mode mixed``).

Runs the app in process (httpx ASGI transport, so no network in the measurement), embeds one
image, fires ``--requests`` /segment calls with ``--concurrency`` in flight, and times the bare
decoder (``Predictor.predict`` on the same embedding) in the same run::

    python benchmarks/segment_load.py                       # random-weight m0_9 at 1024
    python benchmarks/segment_load.py --checkpoint weights/repvit_sam.pt --variant m2_3

``--mode mixed`` times a labeller's clicks while the service does batch work: first
``--clicks`` clicks alone (the quiet p50), then the same clicks while one client embeds new
images in a loop and another runs ``/masks`` (or ``--batch-route /edges``) in a loop, all in
one run. The target: the loaded /segment p99 within 4x the quiet p50::

    python benchmarks/segment_load.py --mode mixed --clicks 200
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from repvit_sam import build_repvit_sam
from repvit_sam_server import Settings, create_app


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


@asynccontextmanager
async def embedded_app(
    settings: Settings, pixels: np.ndarray
) -> AsyncIterator[tuple[object, httpx.AsyncClient, dict]]:
    """The app in process with ``pixels`` embedded: (app, client, a one-point /segment body)."""
    app = create_app(settings)
    stream = io.BytesIO()
    Image.fromarray(pixels).save(stream, "PNG")
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as http,
    ):
        await app.state.load_task
        embedded = (await http.post("/embed", files={"image": ("a.png", stream.getvalue())})).json()
        body = {"embedding_id": embedded["embedding_id"], "points": [[320, 240]], "labels": [1]}
        yield app, http, body


async def run(args: argparse.Namespace, checkpoint: Path) -> None:
    settings = Settings(
        checkpoint=checkpoint,
        variant=args.variant,
        image_size=args.image_size,
        queue_size=max(64, args.concurrency * 2),
    )
    pixels = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    async with embedded_app(settings, pixels) as (app, http, body):
        # The bare decoder on the same embedding, same prompt, same thread count.
        service = app.state.service
        embedding = service.get_embedding(body["embedding_id"])
        points, labels = np.array([[320.0, 240.0]]), np.array([1])
        bare = []
        for _ in range(args.decoder_runs):
            started = time.perf_counter()
            await service.decode(embedding, points, labels, None, None, False)
            bare.append(time.perf_counter() - started)

        latencies: list[float] = []
        statuses: list[int] = []
        semaphore = asyncio.Semaphore(args.concurrency)

        async def one() -> None:
            async with semaphore:
                started = time.perf_counter()
                response = await http.post("/segment", json=body)
                latencies.append(time.perf_counter() - started)
                statuses.append(response.status_code)

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(args.requests)))
        elapsed = time.perf_counter() - started

    # Latency under load includes queueing; the ratio uses unloaded single-call latency too.
    p50_decoder = statistics.median(bare)
    rows = [
        ("requests", f"{args.requests} ({args.concurrency} concurrent)"),
        ("status codes", _status_counts(statuses)),
        ("requests/s", f"{args.requests / elapsed:.1f}"),
        ("/segment p50 (ms)", f"{1000 * percentile(latencies, 50):.1f}"),
        ("/segment p99 (ms)", f"{1000 * percentile(latencies, 99):.1f}"),
        ("bare decoder p50 (ms)", f"{1000 * p50_decoder:.1f}"),
        ("/segment p50 / decoder p50", f"{percentile(latencies, 50) / p50_decoder:.2f}"),
        ("serial /segment p50 / decoder p50", f"{args.serial_p50 / p50_decoder:.2f}"),
    ]
    _print_rows(rows)


def new_png(rng: np.random.Generator) -> bytes:
    stream = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(stream, "PNG")
    return stream.getvalue()


async def clicks(http: httpx.AsyncClient, body: dict, count: int, pause: float) -> list[float]:
    """Seconds of ``count`` /segment calls one after the other, ``pause`` seconds apart."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = await http.post("/segment", json=body)
        times.append(time.perf_counter() - started)
        response.raise_for_status()
        await asyncio.sleep(pause)
    return times


async def mixed(args: argparse.Namespace, checkpoint: Path) -> None:
    """Clicks alone, then the same clicks beside an embedding loop and a /masks or /edges loop."""
    settings = Settings(checkpoint=checkpoint, variant=args.variant, image_size=args.image_size)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    async with embedded_app(settings, pixels) as (_, http, body):
        await clicks(http, body, 5, 0)  # warm the path
        quiet = await clicks(http, body, args.clicks, args.pause)
        done = asyncio.Event()
        counts = {"embeds": 0, "batch tasks": 0}
        statuses: list[int] = []

        # New images (so encoded), made before the clock starts: a labeller's client makes them
        # elsewhere, not on the cores the service runs on.
        pngs = [new_png(rng) for _ in range(args.images)]

        async def embedder() -> None:
            for png in pngs:
                if done.is_set():
                    return
                answer = await http.post("/embed", files={"image": ("b.png", png)})
                statuses.append(answer.status_code)
                counts["embeds"] += 1
            raise SystemExit("the embedding loop ran out of new images: raise --images")

        async def batch() -> None:
            task = {"embedding_id": body["embedding_id"], "points_per_side": args.points_per_side}
            while not done.is_set():
                statuses.append((await http.post(args.batch_route, json=task)).status_code)
                counts["batch tasks"] += 1

        workers = [asyncio.ensure_future(embedder()), asyncio.ensure_future(batch())]
        await asyncio.sleep(1.0)  # both loops have work on the model thread
        started = time.perf_counter()
        loaded = await clicks(http, body, args.clicks, args.pause)
        elapsed = time.perf_counter() - started
        done.set()
        await asyncio.gather(*workers)

    quiet_p50 = percentile(quiet, 50)
    p99 = percentile(loaded, 99)
    rows = [
        ("clicks", f"{args.clicks} quiet, {args.clicks} loaded ({args.pause * 1000:.0f} ms apart)"),
        (
            "beside the loaded clicks",
            f"{counts['embeds']} /embed, "
            f"{counts['batch tasks']} {args.batch_route} in {elapsed:.1f} s",
        ),
        ("their status codes", _status_counts(statuses)),
        ("quiet /segment p50 (ms)", f"{1000 * quiet_p50:.1f}"),
        ("loaded /segment p50 (ms)", f"{1000 * percentile(loaded, 50):.1f}"),
        ("loaded /segment p99 (ms)", f"{1000 * p99:.1f}"),
        ("loaded /segment max (ms)", f"{1000 * max(loaded):.1f}"),
        ("loaded p99 / quiet p50 (target <= 4)", f"{p99 / quiet_p50:.2f}"),
    ]
    _print_rows(rows)


async def serial_p50(args: argparse.Namespace, checkpoint: Path) -> float:
    """/segment p50 with one request at a time: the per-call overhead over the decoder."""
    settings = Settings(checkpoint=checkpoint, variant=args.variant, image_size=args.image_size)
    async with embedded_app(settings, np.full((480, 640, 3), 90, np.uint8)) as (_, http, body):
        times = []
        for _ in range(args.decoder_runs):
            started = time.perf_counter()
            await http.post("/segment", json=body)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="default: random m0_9 weights")
    parser.add_argument("--variant", default="m0_9")
    parser.add_argument("--image-size", type=int, default=None, help="default 1024")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--decoder-runs", type=int, default=30)
    parser.add_argument("--mode", choices=("load", "mixed"), default="load")
    parser.add_argument("--clicks", type=int, default=100, help="mixed: clicks per phase")
    parser.add_argument("--pause", type=float, default=0.05, help="mixed: seconds between clicks")
    parser.add_argument("--batch-route", choices=("/masks", "/edges"), default="/masks")
    parser.add_argument("--points-per-side", type=int, default=16, help="mixed: the batch grid")
    parser.add_argument("--images", type=int, default=64, help="mixed: new images to embed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = args.checkpoint
        if checkpoint is None:
            torch.manual_seed(0)
            checkpoint = Path(folder) / "random.pt"
            model = build_repvit_sam(variant=args.variant, image_size=args.image_size)
            torch.save(model.state_dict(), checkpoint)
        if args.mode == "mixed":
            asyncio.run(mixed(args, checkpoint))
            return
        args.serial_p50 = asyncio.run(serial_p50(args, checkpoint))
        asyncio.run(run(args, checkpoint))


def _status_counts(statuses: list[int]) -> str:
    return ", ".join(f"{code}: {statuses.count(code)}" for code in sorted(set(statuses)))


def _print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
