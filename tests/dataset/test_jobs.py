"""``repvit-sam embed-dataset`` and ``amg-dataset`` in this process: ids shared with the
service, resumable runs, failures isolated, the records of the library's generator."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from repvit_sam import MaskGenerator, Predictor, load_image
from repvit_sam.cli import main
from repvit_sam.dataset import EmbeddingStore, ModelSpec
from repvit_sam_server import Settings, create_app
from tests.comparisons import amg_record_logits, assert_amg_records_agree
from tests.process_helpers import TEST_IMAGE_SIZE, TEST_VARIANT


@pytest.fixture(scope="module")
def service(small_checkpoint) -> Iterator[TestClient]:
    settings = Settings(
        checkpoint=small_checkpoint, variant=TEST_VARIANT, image_size=TEST_IMAGE_SIZE,
        backend="torch",
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:
        client.portal.call(lambda: client.app.state.load_task)
        yield client


def _spec(small_checkpoint) -> ModelSpec:
    return ModelSpec(
        str(small_checkpoint), variant=TEST_VARIANT, image_size=TEST_IMAGE_SIZE, backend="torch"
    )


def test_embed_dataset_stores_every_image_under_the_services_id(
    images, tmp_path, model_options, small_checkpoint, service, capsys
):
    store_dir = tmp_path / "store"
    assert main(["embed-dataset", str(images), "--store", str(store_dir), *model_options]) == 0
    assert "5 images: 5 computed, 0 already done, 0 failed" in capsys.readouterr().out
    _, fingerprint = _spec(small_checkpoint).load()
    store = EmbeddingStore(str(store_dir), fingerprint)
    manifest = store.manifest()
    assert sorted(manifest) == sorted(
        p.relative_to(images).as_posix() for p in images.rglob("*.png")
    )
    for name, key in manifest.items():
        with open(images / name, "rb") as handle:
            answer = service.post("/embed", files={"image": (name, handle.read())}).json()
        assert answer["embedding_id"] == key
        served = service.get(f"/embeddings/{key}")
        stored = store.get(key)
        assert stored is not None and stored.original_size == (answer["height"], answer["width"])
        np.testing.assert_array_equal(np.load(io.BytesIO(served.content)), stored.numpy())


def test_a_rerun_skips_what_is_stored_and_redoes_what_is_missing(
    images, tmp_path, model_options, capsys
):
    store_dir = tmp_path / "store"
    command = ["embed-dataset", str(images), "--store", str(store_dir), *model_options]
    assert main(command) == 0
    capsys.readouterr()
    assert main(command) == 0
    assert "5 images: 0 computed, 5 already done" in capsys.readouterr().out
    removed = next(store_dir.rglob("*.rvsam"))
    removed.unlink()
    assert main([*command, "--batch-size", "2"]) == 0
    assert "5 images: 1 computed, 4 already done" in capsys.readouterr().out
    assert removed.is_file()


def test_an_unreadable_image_fails_alone(images, tmp_path, model_options, capsys):
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    store_dir = tmp_path / "store"
    assert main(["embed-dataset", str(images), "--store", str(store_dir), *model_options]) == 1
    out, err = capsys.readouterr()
    assert "6 images: 5 computed, 0 already done, 1 failed" in out
    assert "broken.png" in err and "broken.png" not in EmbeddingStore(str(store_dir), "").manifest()


def test_a_list_file_names_the_images(images, tmp_path, model_options, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two of them\n{images}/image00.png\n\nphotos/image01.png\n")
    store_dir = tmp_path / "store"
    assert main(["embed-dataset", str(listing), "--store", str(store_dir), *model_options]) == 0
    assert "2 images: 2 computed" in capsys.readouterr().out


def test_amg_dataset_writes_the_generators_records_and_resumes(
    images, tmp_path, model_options, small_checkpoint, capsys
):
    store_dir, output = tmp_path / "store", tmp_path / "masks"
    assert main(["embed-dataset", str(images), "--store", str(store_dir), *model_options]) == 0
    params = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
    command = ["amg-dataset", str(images), str(output), "--store", str(store_dir), *params]
    assert main([*command, *model_options]) == 0
    assert "5 images: 5 computed" in capsys.readouterr().out
    # The records are the library generator's on the stored embedding.
    predictor, fingerprint = _spec(small_checkpoint).load()
    store = EmbeddingStore(str(store_dir), fingerprint)
    generator = MaskGenerator(
        predictor.model, points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0,
        output_mode="coco_rle",
    )  # fmt: skip
    manifest = store.manifest()
    for path in sorted(images.rglob("*.png")):
        name = path.relative_to(images).as_posix()
        written = json.loads((output / name).with_suffix(".json").read_text())
        embedding = store.get(manifest[name])
        with torch.inference_mode():
            expected = generator.generate(load_image(path), embedding=embedding)
        assert written and len(written) == len(expected)
        logits = [amg_record_logits(Predictor(predictor.model), embedding, r) for r in expected]
        assert_amg_records_agree(written, expected, logits, iou_atol=1e-6)
    assert main([*command, *model_options]) == 0
    assert "5 images: 0 computed, 5 already done" in capsys.readouterr().out
