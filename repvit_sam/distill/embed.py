"""Precomputing teacher embeddings over an image folder, resumable, on one or many processes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..checkpoint import CheckpointSource
from ..errors import InvalidInputError
from . import distributed
from .data import (
    ImageFolder,
    ShardWriter,
    check_images,
    ensure_writable,
    list_images,
    prepare_embeddings_folder,
    read_manifest,
    read_parts,
    write_manifest,
)
from .teacher import get_teacher, load_teacher_encoder

logger = logging.getLogger(__name__)


@dataclass
class EmbedConfig:
    """Settings of ``compute_teacher_embeddings``.

    Attributes:
        images: Folder of images (searched recursively; SA-1B's layout works).
        output: Folder for the shards and the manifest; an unfinished one is resumed.
        teacher: ``vit_h``, ``vit_l``, ``vit_b`` (or ``tiny`` for tests).
        teacher_checkpoint: The segment-anything checkpoint of that teacher.
        batch_size: Images per forward pass.
        shard_size: Embeddings per shard file (a 1024 input gives 2 MiB per embedding).
        num_workers: DataLoader processes decoding and preprocessing images.
        device: ``auto``, ``cpu``, ``cuda``...; under torchrun ``auto`` picks the local GPU.
        check_images: Open every image's header before starting (off for huge folders).
        progress: Show a progress bar on rank 0.
    """

    images: Path
    output: Path
    teacher: str
    teacher_checkpoint: CheckpointSource
    batch_size: int = 8
    shard_size: int = 256
    num_workers: int = 2
    device: str = "auto"
    check_images: bool = True
    progress: bool = True


def compute_teacher_embeddings(config: EmbedConfig) -> dict:
    """Writes the teacher embedding of every image as float16 shards and a manifest.

    Under ``torchrun`` every rank embeds every ``world_size``-th image not already done and
    rank 0 writes the manifest once all are done. Every input is validated before any work.

    Returns:
        The manifest (also in ``output/manifest.json``).

    Raises:
        InvalidInputError: Empty or missing folder, unknown teacher, unwritable output.
        InvalidImageError: Unreadable images (all listed).
        CheckpointError: A checkpoint that is not the ``teacher``'s architecture.
    """
    teacher = get_teacher(config.teacher)
    if config.batch_size < 1 or config.shard_size < 1:
        raise InvalidInputError("batch_size and shard_size must be >= 1")
    names = list_images(config.images)
    output = ensure_writable(config.output)
    if config.check_images:
        check_images(config.images, names)
    encoder = load_teacher_encoder(teacher, config.teacher_checkpoint)
    prepare_embeddings_folder(
        output,
        {
            "teacher": teacher.name,
            "image_size": teacher.img_size,
            "image_root": str(Path(config.images).resolve()),
            "embedding_shape": [256, teacher.embedding_size, teacher.embedding_size],
            "preprocessing": "ResizeLongestSide.apply_image + Sam.preprocess (pad bottom-right)",
        },
    )
    done = {name for shard in read_parts(output) for name in shard["images"]}
    todo = [name for name in names if name not in done]
    env = distributed.setup(config.device)
    try:
        distributed.barrier(env)  # every rank has read what is done before any rank writes
        logger.info("%d images, %d done before", len(names), len(done))
        _embed(config, env, encoder.to(env.device), todo, output, teacher.img_size)
        distributed.barrier(env)
        manifest = write_manifest(output, names) if env.is_main else {}
        distributed.barrier(env)
        if not env.is_main:
            manifest = read_manifest(output)
    finally:
        distributed.teardown(env)
    logger.info("%d teacher embeddings in %s", manifest["num_images"], output)
    return manifest


@torch.inference_mode()
def _embed(
    config: EmbedConfig,
    env: distributed.DistEnv,
    encoder: torch.nn.Module,
    todo: list[str],
    output: Path,
    img_size: int,
) -> None:
    mine = todo[env.rank :: env.world_size]
    logger.info("rank %d embeds %d images", env.rank, len(mine))
    if not mine:
        return
    loader = torch.utils.data.DataLoader(
        ImageFolder(config.images, mine, img_size),
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        pin_memory=env.device.type == "cuda",
    )
    writer = ShardWriter(output, env.rank, config.shard_size)
    bar = tqdm(
        total=len(todo),
        initial=0,
        unit="img",
        desc="teacher embeddings",
        disable=not (config.progress and env.is_main),
    )
    with bar:
        for indices, images in loader:
            embeddings = encoder(images.to(env.device, non_blocking=True))
            writer.add([mine[i] for i in indices.tolist()], embeddings)
            bar.update(len(indices) * env.world_size)
        writer.flush()
    logger.debug("rank %d has written %d shards", env.rank, writer.count)
