"""The edge stage on synthetic shapes, the evaluator, EdgeDetector end to end and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from repvit_sam import EdgeDetector, InvalidInputError, RepViTSAM, build_repvit_sam
from repvit_sam import cli as cli_module
from repvit_sam.cli import common as cli_common
from repvit_sam.edge_eval import default_thresholds, evaluate_image, load_ground_truth, summarize
from repvit_sam.edges import edge_map_from_logits
from repvit_sam.visualize import mask_outline

H, W = 96, 128
YY, XX = np.mgrid[:H, :W]


def disc(cy: float, cx: float, r: float) -> np.ndarray:
    """Signed distance logits of a disc: positive inside."""
    return r - np.hypot(YY - cy, XX - cx)


def rectangle(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    return np.minimum.reduce([YY - y0, y1 - YY, XX - x0, x1 - XX]).astype(np.float64)


SCENES = {
    "disc": [disc(48, 64, 30)],
    "rectangle": [rectangle(20, 25, 75, 100)],
    "overlapping": [disc(40, 50, 25), rectangle(20, 70, 80, 115), disc(60, 90, 20)],
}


def truth_of(shapes: list[np.ndarray]) -> np.ndarray:
    """The true boundaries: every shape's outline."""
    return np.logical_or.reduce([mask_outline(s > 0) for s in shapes])


def write_bsds(root, scenes) -> None:
    (root / "images" / "test").mkdir(parents=True)
    (root / "groundTruth" / "test").mkdir(parents=True)
    for name, shapes in scenes.items():
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(
            root / "images" / "test" / f"{name}.png"
        )
        truth = truth_of(shapes).astype(np.uint8) * 255
        Image.fromarray(truth).save(root / "groundTruth" / "test" / f"{name}.png")


@pytest.mark.parametrize("name", list(SCENES))
def test_edge_stage_on_known_shapes(name):
    logits = torch.tensor(np.stack(SCENES[name]) * 3, dtype=torch.float32)
    edges = edge_map_from_logits(logits)
    assert edges.shape == (H, W) and edges.dtype == np.float32
    assert edges.min() == 0 and edges.max() == pytest.approx(1.0)
    thresholds = default_thresholds(9)
    scores = summarize([evaluate_image(edges, [truth_of(SCENES[name])], thresholds)], thresholds)
    assert scores.ods >= 0.9
    # Thinning leaves about one pixel per boundary pixel.
    assert (edges > 0).sum() <= 1.3 * truth_of(SCENES[name]).sum()


def test_edge_stage_chunks_equal_whole():
    logits = torch.tensor(np.stack(SCENES["overlapping"]), dtype=torch.float32)
    whole = edge_map_from_logits(logits)
    chunked = edge_map_from_logits(iter([logits[:1], logits[1:]]))
    np.testing.assert_allclose(whole, chunked, atol=1e-6)
    with pytest.raises(InvalidInputError, match="logits"):
        edge_map_from_logits(logits[0])


def test_evaluator_extremes():
    truth = truth_of(SCENES["disc"])
    thresholds = default_thresholds(5)
    perfect = summarize([evaluate_image(truth.astype(np.float32), [truth], thresholds)], thresholds)
    assert perfect.ods == pytest.approx(1.0) and perfect.ois == pytest.approx(1.0)
    empty = summarize([evaluate_image(np.zeros((H, W)), [truth], thresholds)], thresholds)
    assert empty.ods == 0.0
    shifted = np.roll(truth, 5, axis=1).astype(np.float32)  # 5 px > 0.0075 * diagonal (1.2 px)
    far = summarize([evaluate_image(shifted, [truth], thresholds)], thresholds)
    assert far.ods < 0.3


def test_eval_edges_command(tmp_path, capsys):
    data, predictions = tmp_path / "bsds", tmp_path / "pred"
    write_bsds(data, SCENES)
    predictions.mkdir()
    for name, shapes in SCENES.items():
        edges = edge_map_from_logits(torch.tensor(np.stack(shapes) * 3, dtype=torch.float32))
        Image.fromarray(np.round(edges * 255).astype(np.uint8)).save(predictions / f"{name}.png")
    argv = ["eval-edges", str(data), "--split", "test", "--predictions", str(predictions)]
    assert cli_module.main([*argv, "--thresholds", "9"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["ODS"] >= 0.9 and scores["OIS"] >= 0.9 and scores["images"] == 3
    assert cli_module.main(["eval-edges", str(tmp_path)]) == 2  # not a BSDS folder


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_repvit_sam(variant="m0_9", image_size=256)


def test_detector_end_to_end(model):
    image = skimage.data.chelsea()[::4, ::4].copy()
    detector = EdgeDetector(model)
    first, second = detector.detect(image), detector.detect(image)
    assert first.edges.shape == image.shape[:2] and first.edges.dtype == np.float32
    assert first.edges.min() >= 0 and first.edges.max() <= 1
    assert first.num_masks == 768 and 1 <= first.num_kept <= 768
    np.testing.assert_array_equal(first.edges, second.edges)
    png = first.to_uint8()
    assert png.dtype == np.uint8 and png.shape == image.shape[:2]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("points_per_side", 0),
        ("points_per_side", True),
        ("nms_thresh", 2.0),
        ("nms_thresh", True),
        ("boundary_width", 0),
    ],
)
def test_detector_rejects_bad_parameters(model, name, value):
    with pytest.raises(InvalidInputError, match=name):
        EdgeDetector(model, **{name: value})


def test_detector_takes_numpy_numbers_as_the_mask_generator_does(model):
    detector = EdgeDetector(model, points_per_side=np.int64(4), nms_thresh=np.float32(0.5))
    assert detector.points_per_side == 4 and detector.nms_thresh == 0.5


def test_amg_and_edges_commands(model, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli_common, "load_sam", lambda args: RepViTSAM.from_model(model))
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(skimage.data.coffee()[::4, ::4].copy()).save(folder / "coffee.png")
    low = ["--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
    argv = ["amg", str(folder), str(tmp_path / "masks"), "--points-per-side", "4", *low]
    assert cli_module.main([*argv, "--overlay"]) == 0
    count = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["masks"]
    rows = (tmp_path / "masks" / "coffee" / "metadata.csv").read_text().splitlines()
    assert rows[0].startswith("id,area,bbox_x0") and len(rows) == count + 1
    assert len(list((tmp_path / "masks" / "coffee").glob("*.png"))) == count
    assert (tmp_path / "masks" / "coffee_overlay.png").exists()
    assert cli_module.main([*argv, "--json"]) == 0
    records = json.loads((tmp_path / "masks" / "coffee.json").read_text())
    assert len(records) == count and "counts" in records[0]["segmentation"]
    assert cli_module.main(["amg", str(folder), str(tmp_path), "--pred-iou-thresh", "2"]) == 2
    assert "pred_iou_thresh" in capsys.readouterr().err

    edges_out = tmp_path / "edges"
    assert cli_module.main(["edges", str(folder / "coffee.png"), str(edges_out), "--overlay"]) == 0
    edge_png = np.asarray(Image.open(edges_out / "coffee.png"))
    assert edge_png.dtype == np.uint8 and edge_png.shape == (100, 150)
    assert (edges_out / "coffee_overlay.png").exists()


@pytest.mark.parametrize("name", ["1.mat", "1.png"])
def test_a_corrupt_ground_truth_names_its_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"not a ground truth")
    with pytest.raises(InvalidInputError, match=f"{name} is not a BSDS ground truth"):
        load_ground_truth(path)
