"""What a user waits for on each run of ``repvit-sam segment``: the first run with a backend
(which exports and compiles the encoder, for the ONNX backends) and the runs after it (which
load the export from the cache folder), and ``repvit-sam --help``::

    python benchmarks/cold_start.py [--runs 2] [--threads 2]

Each run is a new process, timed from start to exit (wall seconds, and the CPU seconds it used,
which a busy shared machine disturbs less), on a 1024x768 image with the full-size model (random
weights in the official layout, written to a temporary folder); every backend starts from an
empty cache folder of its own. Prints one table, with the machine's load average.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BACKENDS = ("torch", "onnxruntime", "openvino", "auto")


def _seconds(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _row(label: str, runs: list[tuple[float, float]]) -> str:
    wall = statistics.median(wall for wall, _ in runs)
    cpu = statistics.median(cpu for _, cpu in runs)
    return f"| {label} | {wall:.2f} | {cpu:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("::")[0])
    parser.add_argument("--runs", type=int, default=2, help="runs per backend, the first cold")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS")
    args = parser.parse_args()
    if args.runs < 2:
        parser.error("--runs must be at least 2 (one cold, one warm)")

    with tempfile.TemporaryDirectory(prefix="repvit_sam_cold_") as name:
        _measure(Path(name), args.runs, args.threads)


def _measure(folder: Path, runs_per_backend: int, threads: int) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from repvit_sam import build_repvit_sam
    from repvit_sam.runtimes import is_available

    checkpoint = folder / "random.pt"
    torch.manual_seed(0)
    torch.save(build_repvit_sam().state_dict(), checkpoint)
    image = folder / "image.png"
    pixels = np.random.default_rng(0).integers(0, 255, (768, 1024, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cli = [sys.executable, "-m", "repvit_sam.cli"]

    print("| run | wall s | CPU s |")
    print("|---|---|---|")
    help_runs = [_seconds([*cli, "--help"], env) for _ in range(3)]
    print(_row("`repvit-sam --help` (median of 3)", help_runs))
    for backend in BACKENDS:
        if not is_available(backend):
            print(f"| segment --backend {backend} | not installed | |")
            continue
        home = folder / f"home-{backend}"
        command = [
            *cli, "segment", str(image), "--point", "512,384", "-o", str(folder / "mask.png"),
            "--checkpoint", str(checkpoint), "--backend", backend,
        ]  # fmt: skip
        runs = [
            _seconds(command, {**env, "REPVIT_SAM_HOME": str(home)})
            for _ in range(runs_per_backend)
        ]
        print(_row(f"segment --backend {backend}, first run", runs[:1]))
        print(_row(f"segment --backend {backend}, later runs (median)", runs[1:]))
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\nCPU: {_cpu_name()}; {threads} threads; torch {torch.__version__}; load {load}")


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
