"""``export-onnx --format``: samexporter's own inference code on our pair, the model YAML
X-AnyLabeling reads (loaded by X-AnyLabeling's own model manager where its venv is given), and
the official RepViT-SAM encoder signature.

The model is m0_9 at SAM's 1024 input (samexporter and X-AnyLabeling resize to 1024), random
weights with sharpened mask logits so masks have edges. The image is 1024x684: samexporter
letterboxes every image into a 684x1024 canvas, and at exactly that size its encoder input is
the image itself, so its masks must equal our Predictor's (up to the ONNX encoder's rounding).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime
import pytest
import torch
import yaml

from repvit_sam import Predictor, build_repvit_sam
from repvit_sam.cli import main
from repvit_sam.onnx_formats import export_onnx

MIN_AGREEMENT = 0.999
HEIGHT, WIDTH = 684, 1024


def sam_onnx_class() -> Any:
    """samexporter's ``SegmentAnythingONNX``, unchanged; its module configures the root logger
    at import (``logging.basicConfig(level=DEBUG)``), which must not leak into other tests."""
    pytest.importorskip("samexporter", reason="needs samexporter (pip install -e '.[dev]')")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from samexporter.sam_onnx import SegmentAnythingONNX

    root.handlers[:], root.level = handlers, level
    return SegmentAnythingONNX


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    sam = build_repvit_sam(variant="m0_9")
    with torch.no_grad():
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(20)
    return sam.eval()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    picture = np.stack([x * 0.2, y * 0.3, (x + y) * 0.1], axis=-1).astype(np.uint8)
    picture[200:450, 300:700] = (250, 240, 30)
    picture[500:640, 80:260] = (20, 60, 220)
    return picture


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("samexporter")
    return {
        k: Path(v) for k, v in export_onnx(model, folder, format="samexporter").as_dict().items()
    }


@pytest.fixture(scope="module")
def ours(model, image) -> tuple[Predictor, Any]:
    predictor = Predictor(model)
    return predictor, predictor.embed(image)


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float((a == b).mean())


def nontrivial(mask: np.ndarray) -> bool:
    return 0.001 < mask.mean() < 0.999


def padded_box_mask(predictor: Predictor, embedding: Any, exported: dict, box: list) -> np.ndarray:
    """The HxW mask segment-anything's documented ONNX usage (onnx_model_example.ipynb) gives
    for an XYXY box, with the padding point samexporter and X-AnyLabeling always append (SAM's
    notebook adds it only without a box): coordinates through the predictor's transform, the
    embedding from the predictor, ``orig_im_size`` the image's."""
    coords = np.array([[box[0], box[1]], [box[2], box[3]], [0.0, 0.0]])
    coords = predictor.transform.apply_coords(coords, (HEIGHT, WIDTH))[None].astype(np.float32)
    decoder = onnxruntime.InferenceSession(
        str(exported["decoder"]), providers=["CPUExecutionProvider"]
    )
    masks, _, _ = decoder.run(
        None,
        {
            "image_embeddings": embedding.numpy(),
            "point_coords": coords,
            "point_labels": np.array([[2, 3, -1]], dtype=np.float32),
            "mask_input": np.zeros((1, 1, 256, 256), dtype=np.float32),
            "has_mask_input": np.zeros(1, dtype=np.float32),
            "orig_im_size": np.array([HEIGHT, WIDTH], dtype=np.float32),
        },
    )  # fmt: skip
    return masks[0, 0] > 0


# ---- samexporter --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samexporter_run(exported, image):
    """samexporter's encode once; its predict_masks for a prompt -> HxW bool (first mask)."""
    segmenter = sam_onnx_class()(str(exported["encoder"]), str(exported["decoder"]))
    embedding = segmenter.encode(image)

    def predict(prompt: list[dict[str, Any]]) -> np.ndarray:
        masks = segmenter.predict_masks(embedding, prompt)
        assert masks.shape == (1, 1, HEIGHT, WIDTH)
        return masks[0, 0] > 0

    return predict


def test_samexporter_runs_our_pair_on_points(samexporter_run, ours):
    predictor, embedding = ours
    # One click (+ samexporter's padding point): SAM's rule picks the best of the 3 candidates.
    theirs = samexporter_run([{"type": "point", "data": [500, 320], "label": 1}])
    masks, scores, _ = predictor.predict(
        np.array([[500, 320]]), np.array([1]), multimask_output=True, embedding=embedding
    )
    expected = masks[int(np.argmax(scores))]
    assert nontrivial(expected) and agreement(theirs, expected) >= MIN_AGREEMENT

    # Two clicks: the single-mask output.
    prompt = [
        {"type": "point", "data": [500, 320], "label": 1},
        {"type": "point", "data": [150, 560], "label": 0},
    ]
    theirs = samexporter_run(prompt)
    masks, _, _ = predictor.predict(
        np.array([[500, 320], [150, 560]]), np.array([1, 0]), multimask_output=False,
        embedding=embedding,
    )  # fmt: skip
    assert nontrivial(masks[0]) and agreement(theirs, masks[0]) >= MIN_AGREEMENT


def test_samexporter_box_equals_sams_documented_onnx_usage_with_its_padding(
    samexporter_run, ours, exported
):
    predictor, embedding = ours
    box = [280, 180, 720, 470]
    theirs = samexporter_run([{"type": "rectangle", "data": box}])

    expected = padded_box_mask(predictor, embedding, exported, box)
    assert nontrivial(expected) and agreement(theirs, expected) >= MIN_AGREEMENT

    # Our Predictor (and SAM's) encodes a box without the padding point: a slightly different
    # prompt, so a slightly different mask (README, "Backends and ONNX").
    unpadded, _, _ = predictor.predict(
        box=np.array(box), multimask_output=False, embedding=embedding
    )
    assert agreement(theirs, unpadded[0]) >= 0.9


def test_xanylabeling_config_names_the_pair_beside_it(exported):
    config = yaml.safe_load(exported["config"].read_text())
    # What X-AnyLabeling's SegmentAnything reads: Meta.required_config_names and __init__'s.
    assert config["type"] == "segment_anything"
    for key in ("name", "display_name", "encoder_model_path", "decoder_model_path"):
        assert isinstance(config[key], str) and config[key]
    assert (config["input_size"], config["max_width"], config["max_height"]) == (1024, 1024, 682)
    folder = exported["config"].parent
    assert (folder / config["encoder_model_path"]) == exported["encoder"]
    assert (folder / config["decoder_model_path"]) == exported["decoder"]

    encoder = onnxruntime.InferenceSession(
        str(exported["encoder"]), providers=["CPUExecutionProvider"]
    )
    (given,) = encoder.get_inputs()
    assert given.name == "input_image" and given.type == "tensor(float)"
    assert (
        isinstance(given.shape[0], str) and isinstance(given.shape[1], str) and given.shape[2] == 3
    )
    assert [o.name for o in encoder.get_outputs()] == ["image_embeddings"]
    decoder = onnxruntime.InferenceSession(
        str(exported["decoder"]), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in decoder.get_inputs()] == [
        "image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input",
        "orig_im_size",
    ]  # fmt: skip
    assert [o.name for o in decoder.get_outputs()] == ["masks", "iou_predictions", "low_res_masks"]


# ---- X-AnyLabeling's own loader and model code ---------------------------------------------

# The python of a virtual environment holding x-anylabeling-cvhub[cpu] (its PyQt6 and OpenCV
# builds stay out of ours); .ci/tool-venvs.sh makes one and CI sets this variable.
X_ANYLABELING = os.environ.get("REPVIT_SAM_TEST_X_ANYLABELING")
X_ANYLABELING_DRIVER = Path(__file__).with_name("x_anylabeling_sam.py")
# X-AnyLabeling's polygons are approxPolyDP of its mask's contours, so every vertex is a pixel
# of that mask's outline: within this many pixels of our mask's outline.
MAX_VERTEX_DISTANCE = 2.0
X_ANYLABELING_PROMPTS = [
    [{"type": "point", "data": [500, 320], "label": 1}],
    [{"type": "rectangle", "data": [280, 180, 720, 470]}],
]


@pytest.fixture(scope="module")
def x_anylabeling_run(exported, image, tmp_path_factory) -> dict[str, Any]:
    """X-AnyLabeling's "Load Custom Model" on our YAML, then its SegmentAnything on a click
    and a box: ``masks`` (HxW bool each) and the ``shapes`` its labelling canvas would get."""
    if not X_ANYLABELING:
        pytest.skip(
            "X-AnyLabeling's loader not run: set REPVIT_SAM_TEST_X_ANYLABELING to the python "
            "of a venv with x-anylabeling-cvhub[cpu]==4.2.1 (.ci/tool-venvs.sh makes one)"
        )
    work = tmp_path_factory.mktemp("x-anylabeling")
    image_path = work / "image.png"
    cv2.imwrite(str(image_path), image[:, :, ::-1])
    prompts = work / "prompts.json"
    prompts.write_text(json.dumps(X_ANYLABELING_PROMPTS))
    # HOME: X-AnyLabeling's user config (~/.xanylabelingrc) goes to a fresh folder.
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(work)}
    args = [str(exported["config"]), str(image_path), str(prompts), str(work)]
    done = subprocess.run(
        [X_ANYLABELING, str(X_ANYLABELING_DRIVER), *args],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["type"] == "SegmentAnything"
    masks = [np.load(work / f"mask_{i}.npy") for i in range(len(X_ANYLABELING_PROMPTS))]
    return {"masks": masks, "shapes": answer["shapes"]}


def outline_distance(mask: np.ndarray) -> np.ndarray:
    """HxW float32: each pixel's distance in pixels to the nearest pixel of the mask's outline
    (a mask pixel with a neighbour outside the mask)."""
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), borderValue=0)
    outline = mask & ~inner.astype(bool)
    return cv2.distanceTransform((~outline).astype(np.uint8), cv2.DIST_L2, 5)


def test_x_anylabeling_loads_our_yaml_and_predicts_our_masks(x_anylabeling_run, ours, exported):
    predictor, embedding = ours
    click, box = X_ANYLABELING_PROMPTS
    masks, scores, _ = predictor.predict(
        np.array([click[0]["data"]]), np.array([1]), multimask_output=True, embedding=embedding
    )
    expected = [
        masks[int(np.argmax(scores))],
        # a box, with the padding point X-AnyLabeling always appends (see the samexporter test)
        padded_box_mask(predictor, embedding, exported, box[0]["data"]),
    ]
    for theirs, ours_mask, shapes in zip(
        x_anylabeling_run["masks"], expected, x_anylabeling_run["shapes"], strict=True
    ):
        assert nontrivial(ours_mask) and agreement(theirs, ours_mask) >= MIN_AGREEMENT
        assert shapes, "X-AnyLabeling made no polygon of the mask"
        distance = outline_distance(ours_mask)
        for shape in shapes:
            assert (shape["label"], shape["shape_type"]) == ("AUTOLABEL_OBJECT", "polygon")
            vertices = np.array(shape["points"], dtype=int)
            assert distance[vertices[:, 1], vertices[:, 0]].max() <= MAX_VERTEX_DISTANCE


# ---- the official exporter's encoder ------------------------------------------------------


def test_official_encoder_signature(model, ours, image, tmp_path, capsys):
    checkpoint = tmp_path / "model.pt"
    torch.save(model.state_dict(), checkpoint)
    args = ["export-onnx", str(tmp_path / "out"), "--format", "official"]
    assert main([*args, "--checkpoint", str(checkpoint), "--variant", "m0_9"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert Path(written["encoder"]).name == "repvit_sam_image_encoder.onnx"
    encoder = onnxruntime.InferenceSession(written["encoder"], providers=["CPUExecutionProvider"])
    (given,) = encoder.get_inputs()
    assert (given.name, given.shape) == ("image", [1, 3, 1024, 1024])
    assert [o.name for o in encoder.get_outputs()] == ["image_embeddings"]

    predictor, embedding = ours
    resized = torch.as_tensor(predictor.transform.apply_image(image)).permute(2, 0, 1)
    batch = model.preprocess(resized[None].float())  # normalised and padded to 1x3x1024x1024
    (features,) = encoder.run(None, {"image": batch.numpy()})
    np.testing.assert_allclose(features, embedding.numpy(), atol=5e-3)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--format", "samexporter", "--cvat"], "single mask with SAM's three outputs"),
        (["--format", "samexporter", "--return-single-mask"], "always returns a single mask"),
        (["--format", "official", "--preprocess"], "preprocess applies to the 'sam' format only"),
    ],
)
def test_export_options_a_format_does_not_take_are_refused_before_any_work(
    tmp_path, flags, message, capsys
):
    missing = tmp_path / "missing.pt"  # never read: the options are checked first
    assert main(["export-onnx", str(tmp_path / "out"), *flags, "--checkpoint", str(missing)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
