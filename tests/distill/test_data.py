from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from repvit_sam import InvalidImageError, InvalidInputError
from repvit_sam.distill import compute_teacher_embeddings, get_teacher, preprocess
from repvit_sam.distill.data import EmbeddingDataset, check_images, list_images, read_manifest
from repvit_sam.distill.schedule import StepSampler, warmup_cosine
from repvit_sam.distill.teacher import load_teacher_encoder
from repvit_sam.image_io import load_image

from .conftest import IMAGE_SIZES, embed_config


def test_list_images_recursive_sa1b_layout(tmp_path):
    (tmp_path / "sa_000000").mkdir()
    for name in ("sa_000000/sa_2.jpg", "sa_000000/sa_1.jpg", "b.PNG"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sa_000000" / "sa_1.json").write_text("{}")
    assert list_images(tmp_path) == ["b.PNG", "sa_000000/sa_1.jpg", "sa_000000/sa_2.jpg"]


def test_list_images_rejects_empty_and_missing(tmp_path):
    with pytest.raises(InvalidInputError, match="no images in"):
        list_images(tmp_path)
    with pytest.raises(InvalidInputError, match="does not exist"):
        list_images(tmp_path / "nope")


def test_check_images_lists_unreadable(tmp_path, image_folder):
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InvalidImageError, match=r"2 of 2 images .* bad\.jpg .*empty\.png"):
        check_images(tmp_path, ["bad.jpg", "empty.png"])
    check_images(image_folder, list_images(image_folder))


def test_embeddings_are_the_teachers_in_fp16(embeddings, image_folder, teacher_checkpoint):
    manifest = read_manifest(embeddings)
    assert manifest["num_images"] == len(IMAGE_SIZES) and manifest["dtype"] == "float16"
    assert manifest["embedding_shape"] == [256, 4, 4] and manifest["teacher"] == "tiny"
    assert [len(s["images"]) for s in manifest["shards"]] == [4, 2]
    encoder = load_teacher_encoder(get_teacher("tiny"), teacher_checkpoint)
    dataset = EmbeddingDataset(embeddings)
    for index, (name, _, _) in enumerate(dataset.items):
        x, _ = preprocess(load_image(image_folder / name), 64)
        with torch.no_grad():
            expected = encoder(x[None])[0].half()
        stored = dataset.embedding(index)
        assert stored.dtype == torch.float16
        # Batched vs single forward passes differ in the last fp32 bits: one fp16 step at most.
        torch.testing.assert_close(stored, expected, rtol=1e-3, atol=1e-3)


def test_teacher_embed_resumes_after_interruption(tmp_path, image_folder, teacher_checkpoint):
    output = tmp_path / "emb"
    config = embed_config(image_folder, output, teacher_checkpoint, shard_size=2)
    full = compute_teacher_embeddings(config)
    before = {
        n: EmbeddingDataset(output).embedding(i)
        for i, (n, _, _) in enumerate(EmbeddingDataset(output).items)
    }
    # Interrupt: the last shard's record never made it to the part file, no manifest yet.
    part = output / "parts" / "rank0.jsonl"
    lines = part.read_text().splitlines()
    part.write_text("\n".join(lines[:-1]) + "\n")
    (output / "manifest.json").unlink()
    resumed = compute_teacher_embeddings(config)
    assert resumed["num_images"] == full["num_images"] == len(IMAGE_SIZES)
    assert len(resumed["shards"]) == 3
    dataset = EmbeddingDataset(output)
    for index, (name, _, _) in enumerate(dataset.items):
        torch.testing.assert_close(dataset.embedding(index), before[name], rtol=0, atol=0)


def test_teacher_embed_refuses_a_folder_of_another_teacher(
    tmp_path, image_folder, teacher_checkpoint, embeddings
):
    config = json.loads((embeddings / "config.json").read_text())
    output = tmp_path / "emb"
    output.mkdir()
    (output / "config.json").write_text(json.dumps({**config, "teacher": "vit_b"}))
    with pytest.raises(InvalidInputError, match="different settings"):
        compute_teacher_embeddings(embed_config(image_folder, output, teacher_checkpoint))


def test_flip_keeps_image_and_target_aligned(embeddings):
    dataset = EmbeddingDataset(embeddings)
    for index, (name, _, _) in enumerate(dataset.items):
        image, target = dataset[(index, False)]
        flipped_image, flipped_target = dataset[(index, True)]
        height, width = load_image(dataset.image_root / name).shape[:2]
        dim = -2 if height > width else -1  # portrait images are flipped vertically
        torch.testing.assert_close(flipped_image, image.flip(dim))
        torch.testing.assert_close(flipped_target, target.flip(dim))
        # The padding (zeros after normalisation) stays at the bottom-right, where SAM puts it.
        _, (h, w) = preprocess(load_image(dataset.image_root / name), 64)
        assert (flipped_image[:, h:] == 0).all() and (flipped_image[:, :, w:] == 0).all()


def test_warmup_cosine():
    values = [warmup_cosine(s, 100, 10, 0.01) for s in range(101)]
    assert values[0] == pytest.approx(1 / 11) and values[9] == pytest.approx(10 / 11)
    assert values[10] == pytest.approx(1.0) and values[100] == pytest.approx(0.01)
    assert all(a >= b for a, b in itertools.pairwise(values[10:]))


def test_step_sampler_partitions_ranks_and_resumes():
    def draw(rank, start, world=2):
        sampler = StepSampler(
            7,
            2,
            start_step=start,
            total_steps=6,
            accumulation=2,
            rank=rank,
            world_size=world,
            seed=3,
            augment=True,
        )
        return list(sampler)

    rank0, rank1 = draw(0, 0), draw(1, 0)
    assert len(rank0) == len(rank1) == 12
    # The first epoch (7 samples) is a permutation across ranks and micro-batches.
    stream = [item for pair in zip(rank0, rank1, strict=True) for batch in pair for item in batch]
    assert sorted(i for i, _ in stream[:7]) == list(range(7))
    assert draw(0, 4) == rank0[8:]
    assert any(flip for batch in rank0 for _, flip in batch)
    assert np.mean([flip for batch in rank0 for _, flip in batch]) < 1
