"""The benchmark scripts' own argument checks (the measurements themselves live in benchmarks/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SPEED = Path(__file__).resolve().parent.parent / "benchmarks" / "speed.py"


@pytest.mark.parametrize("option", ["--rounds", "--repeats"])
@pytest.mark.parametrize("value", ["0", "-2"])
def test_speed_rejects_counts_below_one(option, value):
    done = subprocess.run(
        [sys.executable, str(SPEED), option, value], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert f"argument {option}: must be at least 1, got {value}" in done.stderr


@pytest.mark.parametrize("arguments", [["--images", "0"], ["--batch-sizes", "4", "0"]])
def test_dataset_benchmark_rejects_counts_below_one(arguments):
    script = SPEED.parent / "dataset.py"
    done = subprocess.run(
        [sys.executable, str(script), *arguments], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "must be at least 1" in done.stderr
