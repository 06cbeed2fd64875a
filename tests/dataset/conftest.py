"""Fixtures of the dataset jobs: a folder of small images and the job's command-line options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.process_helpers import TEST_IMAGE_SIZE, TEST_VARIANT


def write_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` distinct PNGs of varied sizes, some in a subfolder."""
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        height, width = int(rng.integers(40, 90)), int(rng.integers(40, 120))
        pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        pixels[height // 4 : height // 2, width // 4 : width // 2] = 230
        path = folder / ("nested" if index % 3 == 2 else "") / f"image{index:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "photos"
    write_images(folder, 5)
    return folder


@pytest.fixture
def model_options(small_checkpoint) -> list[str]:
    return [
        "--checkpoint", str(small_checkpoint), "--variant", TEST_VARIANT,
        "--image-size", str(TEST_IMAGE_SIZE), "--backend", "torch",
    ]  # fmt: skip
