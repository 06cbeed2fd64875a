"""Shared fixtures: a folder of small images, a tiny teacher and its embeddings, a short run."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from repvit_sam.distill import (
    TEACHERS,
    EmbedConfig,
    TrainConfig,
    compute_teacher_embeddings,
    train,
)
from repvit_sam.distill.teacher import build_teacher_sam

IMAGE_SIZES = [(64, 64), (48, 80), (90, 60), (72, 72), (64, 96), (80, 64)]


def write_images(folder: Path, sizes: list[tuple[int, int]], seed: int = 0) -> Path:
    """Striped images with a coloured rectangle; landscape, portrait and square ones."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        y, x = np.mgrid[0:h, 0:w]
        image = np.stack([(x * (3 + i)) % 256, (y * (2 + i)) % 256, ((x + y) * 4) % 256], -1)
        image = image.astype(np.uint8)
        image[h // 4 : h // 2, w // 3 : w // 2] = rng.integers(0, 255, 3)
        Image.fromarray(image).save(folder / f"im{i}.png")
    return folder


def embed_config(images: Path, output: Path, checkpoint: Path, **overrides) -> EmbedConfig:
    options = dict(batch_size=2, shard_size=4, num_workers=0, device="cpu", progress=False)
    options.update(overrides)
    return EmbedConfig(images, output, "tiny", checkpoint, **options)


def train_config(embeddings: Path, output: Path, **overrides) -> TrainConfig:
    options = dict(
        variant="m0_9",
        steps=30,
        batch_size=2,
        lr=2e-3,
        warmup_steps=3,
        checkpoint_every=10,
        log_every=1,
        num_workers=0,
        device="cpu",
        progress=False,
    )
    options.update(overrides)
    return TrainConfig(embeddings, output, **options)


@contextlib.contextmanager
def one_thread():
    """One intra-op thread: faster on a busy machine, and bit-reproducible CPU kernels."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="module")
def _one_thread_per_module():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("images") / "train", IMAGE_SIZES)


@pytest.fixture(scope="session")
def teacher_checkpoint(tmp_path_factory) -> Path:
    """A random-weight tiny SAM (2 ViT blocks, 64x64 input, 4x4 embedding)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "sam_tiny.pt"
    torch.save(build_teacher_sam(TEACHERS["tiny"]).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def embeddings(tmp_path_factory, image_folder, teacher_checkpoint) -> Path:
    output = tmp_path_factory.mktemp("embeddings") / "emb"
    with one_thread():
        compute_teacher_embeddings(embed_config(image_folder, output, teacher_checkpoint))
    return output


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, embeddings) -> Path:
    """30 steps of m0_9 at 64x64 on the 6 images."""
    output = tmp_path_factory.mktemp("run") / "run"
    with one_thread():
        train(train_config(embeddings, output))
    return output
