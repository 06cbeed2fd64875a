"""Dataset jobs' throughput: ``repvit-sam embed-dataset`` in process, and on a local Ray
cluster (a head and a second node, one CPU each) with 1 and 2 workers, in one run::

    python benchmarks/dataset.py [--images 16] [--variant m2_3] [--batch-sizes 1 8]

Each row is a fresh store and a new driver process, timed from start to exit (so it includes
loading the model in each worker: what a user waits for); the summary line's images/s, which
counts from the first batch, is shown beside it. Random weights in the official layout, written
to a temporary folder; 1024x768 images. Prints one table.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, env=ENVIRONMENT, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout.strip().splitlines()[-1]


def _rate(summary: str) -> str:
    found = re.search(r"\(([\d.]+) images/s\)", summary)
    return found.group(1) if found else "?"


def _first_click(checkpoint: Path, variant: str, store: Path | None, png: bytes) -> float:
    """Seconds of a labeller's first click on an image: /embed, then /segment, in process."""
    import asyncio

    import httpx

    from repvit_sam_server import Settings, create_app

    settings = Settings(
        checkpoint=checkpoint, variant=variant, backend="torch",
        store_url=str(store) if store else None,
    )  # fmt: skip

    async def click() -> float:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            await app.state.load_task
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://b") as http:
                started = time.perf_counter()
                embedded = await http.post("/embed", files={"image": ("a.png", png)})
                body = {"embedding_id": embedded.json()["embedding_id"], "points": [[512, 384]]}
                (await http.post("/segment", json=body)).raise_for_status()
                return time.perf_counter() - started

    return asyncio.run(click())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("::")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--variant", default="m2_3")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    if args.images < 1 or min(args.batch_sizes) < 1:
        parser.error("--images and --batch-sizes must be at least 1")

    import numpy as np
    import torch
    from PIL import Image

    from repvit_sam import build_repvit_sam

    folder = Path(tempfile.mkdtemp(prefix="repvit_sam_dataset_"))
    checkpoint = folder / "random.pt"
    torch.manual_seed(0)
    torch.save(build_repvit_sam(variant=args.variant).state_dict(), checkpoint)
    images = folder / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index in range(args.images):
        pixels = rng.integers(0, 255, (768, 1024, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{index:04d}.png")
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    base = [sys.executable, "-m", "repvit_sam.cli", "embed-dataset", str(images)]
    model = ["--checkpoint", str(checkpoint), "--variant", args.variant, "--backend", "torch"]
    rows = [("in process", [])]
    address = None
    if ray is not None:
        port = _free_port()
        address = f"127.0.0.1:{port}"
        node = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
        subprocess.run([ray, "start", "--head", "--port", str(port), *node], env=ENVIRONMENT,
                       check=True, capture_output=True)  # fmt: skip
        subprocess.run([ray, "start", "--address", address, *node], env=ENVIRONMENT,
                       check=True, capture_output=True)  # fmt: skip
        rows += [(f"Ray, {n} worker{'s' * (n > 1)}", ["--ray", address, "--workers", str(n)])
                 for n in (1, 2)]  # fmt: skip
    stores = []
    try:
        print("| run | batch size | seconds (process) | images/s (summary) |")
        print("|---|---|---|---|")
        for name, extra in rows:
            for batch in args.batch_sizes:
                store = folder / f"store-{len(os.listdir(folder))}"
                command = [*base, "--store", str(store), *model, *extra, "--batch-size", str(batch)]
                seconds, summary = _run(command)
                stores.append(store)
                print(f"| {name} | {batch} | {seconds:.1f} | {_rate(summary)} |")
        first = sorted(images.iterdir())[0].read_bytes()
        print("\n| first click on a dataset image (/embed + /segment) | seconds |")
        print("|---|---|")
        for label, store_url in (("without the store", None), ("with the store", stores[0])):
            print(f"| {label} | {_first_click(checkpoint, args.variant, store_url, first):.2f} |")
    finally:
        if address is not None:
            subprocess.run([ray, "stop", "--force"], env=ENVIRONMENT, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")), "?")
    print(f"\n{args.images} images, {args.variant}, torch backend, 1 thread per worker; CPU: {cpu}")
    if ray is None:
        print("Ray is not installed: pip install -e '.[ray]' for the Ray rows")


if __name__ == "__main__":
    main()
