"""Shared measurement helpers: each row runs in a fresh process, so its peak memory is its own.

A row is a name in a registry of zero-argument factories that return a callable to time. The
parent process runs ``python benchmarks/measure.py ROW`` per row and reads one JSON line back.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

Factory = Callable[[], Callable[[], object]]


def time_call(function: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_row_here(factory: Factory, repeats: int) -> dict[str, object]:
    function = factory()
    times = time_call(function, repeats)
    return {"times_s": times, "peak_mib": peak_rss_mib()}


def summarize(rounds: list[dict[str, object]]) -> dict[str, float]:
    """One row's results over rounds: the median of every timed call, the largest peak memory."""
    times = [t for result in rounds for t in result["times_s"]]
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "peak_mib": max(result["peak_mib"] for result in rounds),
    }


def run_row_in_subprocess(script: Path, row: str, repeats: int, threads: int) -> dict[str, object]:
    """Runs ``script --row ROW`` in a new interpreter and returns its JSON result."""
    command = [
        sys.executable,
        str(script),
        "--row",
        row,
        "--repeats",
        str(repeats),
        "--threads",
        str(threads),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(f"| {line} |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
