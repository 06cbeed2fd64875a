from __future__ import annotations

import numpy as np
import pytest
import torch

from repvit_sam import CheckpointError, Predictor, build_repvit_sam, load_image
from repvit_sam.distill import evaluate, export_student
from repvit_sam.distill.evaluation import boxes_from_masks, mask_iou

from .conftest import write_images


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained_run, teacher_checkpoint):
    return export_student(trained_run, teacher_checkpoint, tmp_path_factory.mktemp("x") / "s.pt")


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("held_out"), [(56, 72), (72, 40)], seed=1)


def test_export_holds_student_encoder_and_teacher_decoder(
    exported, trained_run, teacher_checkpoint
):
    state = torch.load(exported, map_location="cpu", weights_only=True)
    encoder = torch.load(trained_run / "encoder.pt", map_location="cpu", weights_only=True)
    teacher = torch.load(teacher_checkpoint, map_location="cpu", weights_only=True)
    assert {k for k in state if k.startswith("image_encoder.")} == {
        f"image_encoder.{k}" for k in encoder
    }
    for key, value in state.items():
        source = (
            encoder[key.removeprefix("image_encoder.")] if "image_encoder." in key else teacher[key]
        )
        assert torch.equal(value, source), key


def test_exported_checkpoint_loads_strictly_and_segments(exported, held_out):
    build_repvit_sam(exported, variant="m0_9")  # the standard 1024 input: same weights
    sam = build_repvit_sam(exported, variant="m0_9", image_size=64)
    image = load_image(held_out / "im0.png")
    predictor = Predictor(sam)
    predictor.set_image(image)
    masks, scores, logits = predictor.predict(
        box=np.array([10, 10, 50, 40]), multimask_output=False
    )
    assert masks.shape == (1, 56, 72) and masks.dtype == bool
    assert scores.shape == (1,) and np.isfinite(logits).all()
    with pytest.raises(CheckpointError, match="m0_9 checkpoint, but variant='m1_0'"):
        build_repvit_sam(exported, variant="m1_0")


def test_export_rejects_a_teacher_without_decoder(tmp_path, trained_run):
    encoder_only = tmp_path / "enc.pt"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(32, 3, 16, 16)}, encoder_only)
    with pytest.raises(CheckpointError, match="not a SAM checkpoint with prompt_encoder"):
        export_student(trained_run, encoder_only, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_evaluate_student_vs_teacher(exported, held_out, teacher_checkpoint, tmp_path, trained_run):
    report = evaluate(
        held_out, "tiny", teacher_checkpoint, exported, min_score=0.0, device="cpu", progress=False
    )
    assert [s.name for s in report.images] == ["im0.png", "im1.png"]
    assert report.boxes == 32 and 0.0 <= report.mask_miou <= 1.0
    table = report.table()
    assert table.splitlines()[0] == "| image | embedding MSE | box prompts | mask mIoU |"
    assert f"{report.embedding_mse:.6f}" in table and len(table.splitlines()) == 5
    # An untrained student is further from the teacher than the distilled one.
    torch.manual_seed(1)
    untrained = build_repvit_sam(variant="m0_9", image_size=64).image_encoder.state_dict()
    torch.save(untrained, tmp_path / "untrained.pt")
    baseline = export_student(tmp_path / "untrained.pt", teacher_checkpoint, tmp_path / "u.pt")
    worse = evaluate(
        held_out, "tiny", teacher_checkpoint, baseline, min_score=0.0, device="cpu", progress=False
    )
    assert report.embedding_mse < 0.5 * worse.embedding_mse


def test_boxes_and_iou():
    masks = torch.zeros(2, 6, 8, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 4, 7] = True
    assert boxes_from_masks(masks).tolist() == [[2, 1, 5, 3], [7, 4, 8, 5]]
    other = masks.clone()
    other[0, 1, 2] = False
    torch.testing.assert_close(mask_iou(masks, other), torch.tensor([5 / 6, 1.0]))
    empty = torch.zeros(1, 2, 2, dtype=torch.bool)
    assert mask_iou(empty, empty).item() == 1.0
