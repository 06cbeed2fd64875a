"""Helpers shared by the service tests: settings for the tiny model, images, encoders."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from repvit_sam_server import Settings
from tests.process_helpers import TEST_IMAGE_SIZE, TEST_VARIANT

__all__ = ["TEST_IMAGE_SIZE", "TEST_VARIANT", "encode", "make_image", "make_settings"]


def make_settings(checkpoint: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "checkpoint": checkpoint,
        "variant": TEST_VARIANT,
        "image_size": TEST_IMAGE_SIZE,
        "queue_size": 512,
        "max_points": 8,
        "max_boxes": 8,
        "max_pixels": 1_000_000,
        "max_upload_bytes": 2_000_000,
        "backend": "torch",  # no ONNX export per app; test_serve.py runs the default "auto"
    }
    values.update(overrides)
    return Settings(**values)


def make_image(width: int = 160, height: int = 120, seed: int = 0) -> np.ndarray:
    """An HxWx3 uint8 image with a bright rectangle on a noisy background."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
    image[height // 4 : height // 2, width // 4 : width // 2] = 230
    return image


def encode(image: np.ndarray | Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    stream = io.BytesIO()
    pil.save(stream, format=fmt, **options)
    return stream.getvalue()
