"""``CvatOnnxDecoder`` (``export-onnx --cvat``) in ONNX Runtime: CVAT's outputs, the crop and
its box against SAM's own single-mask decoder export, and the empty and full masks."""

from __future__ import annotations

import copy

import numpy as np
import onnxruntime
import pytest

from repvit_sam import Predictor
from repvit_sam.onnx_export import CVAT_OUTPUTS, export_decoder

HEIGHT, WIDTH = 120, 160


def feeds(embedding: np.ndarray, points: list[list[float]], labels: list[int]) -> dict:
    scale = 256 / max(HEIGHT, WIDTH)  # the small model's input side
    return {
        "image_embeddings": embedding,
        "point_coords": (np.array([points], dtype=np.float32) * scale).astype(np.float32),
        "point_labels": np.array([labels], dtype=np.float32),
        "mask_input": np.zeros((1, 1, 64, 64), dtype=np.float32),
        "has_mask_input": np.zeros(1, dtype=np.float32),
        "orig_im_size": np.array([HEIGHT, WIDTH], dtype=np.float32),
    }


def session(path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def decoders(small_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cvat")
    cvat = session(export_decoder(small_model, folder / "cvat.onnx", cvat=True))
    sam = session(export_decoder(small_model, folder / "sam.onnx", return_single_mask=True))
    return cvat, sam


def test_cvat_outputs_are_sams_mask_cropped_to_its_box(decoders, small_model, rgb_image):
    cvat, sam = decoders
    assert [o.name for o in cvat.get_outputs()] == list(CVAT_OUTPUTS)
    embedding = Predictor(small_model).embed(rgb_image).numpy()
    prompts = [
        ([[80, 50], [0, 0]], [1, -1]),
        ([[80, 50], [10, 100], [0, 0]], [1, 0, -1]),
        ([[45, 25], [115, 85], [80, 50]], [2, 3, 1]),
    ]
    boxes = set()
    for points, labels in prompts:
        crop, scores, low_res, *box = cvat.run(None, feeds(embedding, points, labels))
        masks, sam_scores, sam_low_res = sam.run(None, feeds(embedding, points, labels))
        np.testing.assert_array_equal(scores, sam_scores)
        np.testing.assert_array_equal(low_res, sam_low_res)
        assert crop.dtype == np.uint8 and set(np.unique(crop)) <= {0, 1}
        assert all(b.dtype == np.int64 and b.shape == () for b in box)
        xtl, ytl, xbr, ybr = (int(b) for b in box)
        full = masks[0, 0] > small_model.mask_threshold
        rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
        assert (xtl, ytl, xbr, ybr) == (cols[0], rows[0], cols[-1], rows[-1])
        np.testing.assert_array_equal(crop[0, 0], full[ytl : ybr + 1, xtl : xbr + 1])
        boxes.add((xtl, ytl, xbr, ybr))
    assert any(box != (0, 0, WIDTH - 1, HEIGHT - 1) for box in boxes), "no crop was exercised"


@pytest.mark.parametrize(("threshold", "expected"), [(1e9, "empty"), (-1e9, "full")])
def test_cvat_empty_and_full_masks(small_model, rgb_image, tmp_path, threshold, expected):
    model = copy.deepcopy(small_model)
    model.mask_threshold = threshold
    cvat = session(export_decoder(model, tmp_path / "cvat.onnx", cvat=True))
    embedding = Predictor(small_model).embed(rgb_image).numpy()
    crop, *_, xtl, ytl, xbr, ybr = cvat.run(None, feeds(embedding, [[80, 50], [0, 0]], [1, -1]))
    box = (int(xtl), int(ytl), int(xbr), int(ybr))
    if expected == "empty":  # one 0 pixel at (0, 0): a crop every reader can take
        assert box == (0, 0, 0, 0) and crop.shape == (1, 1, 1, 1) and crop.max() == 0
    else:
        assert box == (0, 0, WIDTH - 1, HEIGHT - 1) and crop.shape == (1, 1, HEIGHT, WIDTH)
        assert crop.min() == 1


def test_encoder_export_for_a_batch(small_model, tmp_path):
    import torch

    from repvit_sam.onnx_export import export_encoder

    path = export_encoder(copy.deepcopy(small_model), tmp_path / "encoder.onnx", batch=2)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [2, 3, 256, 256]
    images = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    (out,) = session.run(None, {"images": images.numpy()})
    with torch.inference_mode():
        expected = small_model.image_encoder(images).numpy()
    assert out.shape == expected.shape and np.abs(out - expected).max() <= 5e-3
