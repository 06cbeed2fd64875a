"""What a user waits for on each run of ``repvit-sam segment``: the first run with a backend
(which exports and compiles the encoder, for the ONNX backends) and the runs after it (which
load the export from the cache folder), and ``repvit-sam --help``::

    python benchmarks/cold_start.py [--runs 2] [--threads 2]

Each run is a new process, timed from start to exit, on a 1024x768 image with the full-size
model (random weights in the official layout, written to a temporary folder); every backend
starts from an empty cache folder of its own. Prints one table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BACKENDS = ("torch", "onnxruntime", "openvino", "auto")


def _seconds(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("::")[0])
    parser.add_argument("--runs", type=int, default=2, help="runs per backend, the first cold")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS")
    args = parser.parse_args()
    if args.runs < 2:
        parser.error("--runs must be at least 2 (one cold, one warm)")

    import numpy as np
    import torch
    from PIL import Image

    from repvit_sam import build_repvit_sam
    from repvit_sam.runtimes import is_available

    folder = Path(tempfile.mkdtemp(prefix="repvit_sam_cold_"))
    checkpoint = folder / "random.pt"
    torch.manual_seed(0)
    torch.save(build_repvit_sam().state_dict(), checkpoint)
    image = folder / "image.png"
    pixels = np.random.default_rng(0).integers(0, 255, (768, 1024, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    cli = [sys.executable, "-m", "repvit_sam.cli"]

    print("| run | seconds |")
    print("|---|---|")
    help_times = [_seconds([*cli, "--help"], env) for _ in range(3)]
    print(f"| `repvit-sam --help` (median of 3) | {statistics.median(help_times):.2f} |")
    for backend in BACKENDS:
        if not is_available(backend):
            print(f"| segment --backend {backend} | not installed |")
            continue
        home = folder / f"home-{backend}"
        command = [
            *cli, "segment", str(image), "--point", "512,384", "-o", str(folder / "mask.png"),
            "--checkpoint", str(checkpoint), "--backend", backend,
        ]  # fmt: skip
        times = [_seconds(command, {**env, "REPVIT_SAM_HOME": str(home)}) for _ in range(args.runs)]
        warm = statistics.median(times[1:])
        print(f"| segment --backend {backend}, first run | {times[0]:.1f} |")
        print(f"| segment --backend {backend}, later runs (median) | {warm:.1f} |")
    print(f"\nCPU: {_cpu_name()}; {args.threads} threads; torch {torch.__version__}")


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
