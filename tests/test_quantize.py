"""Reduced precision on the CPU: the int8 encoder (NNCF + OpenVINO), its cache, native bf16."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from repvit_sam import InvalidInputError, backends, quantize, runtimes
from repvit_sam.backends import make_encoder
from repvit_sam.quantize import (
    SAMPLE_PHOTOS,
    calibration_digest,
    calibration_images,
    encoder_input,
    sample_photos,
)

pytest.importorskip("skimage")
needs_int8 = pytest.mark.skipif(
    bool(runtimes.missing_modules("int8")), reason="nncf/openvino not installed ([int8] extra)"
)

# Relative error (Frobenius norm of the difference over the fp32 embedding's) of the int8
# encoder of the small test model, calibrated on two photos, on a third: measured 0.05-0.08.
# The test model's BatchNorm statistics are random, so its activations are not at a trained
# network's scale; benchmarks/precision.py measures agreement on the calibrated stand-in.
INT8_RELATIVE_ERROR = 0.15


@pytest.fixture(scope="module")
def photos():
    return sample_photos(SAMPLE_PHOTOS[:3])


@pytest.fixture(scope="module")
def int8_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("int8_encoders")


@pytest.fixture(scope="module")
def int8_encoder(small_model, photos, int8_cache):
    return make_encoder(
        copy.deepcopy(small_model),
        "openvino",
        precision="int8",
        calibration_images=photos[:2],
        cache_dir=int8_cache,
    )


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).norm() / expected.norm())


@needs_int8
def test_int8_encoder_agrees_with_fp32_within_the_bound(small_model, photos, int8_encoder):
    images = encoder_input(small_model, photos[2])
    with torch.inference_mode():
        expected = small_model.image_encoder(images)
    actual = int8_encoder(images)
    assert actual.shape == expected.shape and actual.dtype == torch.float32
    error = relative_error(actual, expected)
    # A real quantisation: not the fp32 graph under another name, and not garbage either.
    assert 1e-4 < error <= INT8_RELATIVE_ERROR
    assert int8_encoder.name == f"openvino-int8-{calibration_digest(photos[:2])}"


@needs_int8
def test_int8_encoder_is_cached_per_model_and_calibration(
    small_model, photos, int8_encoder, int8_cache, monkeypatch
):
    runs = []
    real = quantize._quantise
    monkeypatch.setattr(quantize, "_quantise", lambda *a: runs.append(a) or real(*a))
    again = make_encoder(
        copy.deepcopy(small_model),
        "auto",
        precision="int8",
        calibration_images=photos[:2],
        cache_dir=int8_cache,
    )
    assert runs == [] and again.int8_path == int8_encoder.int8_path
    images = encoder_input(small_model, photos[2])
    torch.testing.assert_close(again(images), int8_encoder(images), rtol=0, atol=0)
    other = make_encoder(
        copy.deepcopy(small_model),
        "openvino",
        precision="int8",
        calibration_images=photos[1:],
        cache_dir=int8_cache,
    )
    assert len(runs) == 1 and other.int8_path != int8_encoder.int8_path
    assert other.int8_path.name.startswith(int8_encoder.path.stem + "-int8-")
    # Only whole models under their names: no temporary folder left beside them.
    assert not [p for p in int8_cache.iterdir() if p.name.startswith(".")]


def test_calibration_digest_follows_the_pixels(photos):
    assert calibration_digest(photos[:2]) == calibration_digest([p.copy() for p in photos[:2]])
    changed = photos[0].copy()
    changed[0, 0, 0] ^= 1
    assert calibration_digest([changed, photos[1]]) != calibration_digest(photos[:2])


def test_calibration_images_from_a_folder(tmp_path, photos):
    from PIL import Image

    Image.fromarray(photos[1]).save(tmp_path / "b.png")
    Image.fromarray(photos[0]).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    loaded = calibration_images(tmp_path)
    assert len(loaded) == 2 and np.array_equal(loaded[0], photos[0])
    assert len(calibration_images()) == len(SAMPLE_PHOTOS)
    assert all(image.ndim == 3 and image.shape[2] == 3 for image in sample_photos())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "is not a folder"),
        (lambda p: p, "holds no images"),
        (lambda p: [], "calibration_images is empty"),
    ],
)
def test_bad_calibration_images_are_named(tmp_path, make, message):
    with pytest.raises(InvalidInputError, match=message):
        calibration_images(make(tmp_path))


@pytest.mark.parametrize(
    ("backend", "precision", "options", "message"),
    [
        ("torch", "int8", {}, "precision 'int8' is NNCF's quantisation run by OpenVINO"),
        ("onnxruntime", "int8", {}, "use backend 'openvino' or 'auto'"),
        ("torch", "fp32", {"calibration_images": "x"}, "calibration_images only applies"),
        ("torch", "fp16", {}, "precision 'fp16' needs a CUDA device"),
    ],
)
def test_bad_precision_options_are_named(small_model, backend, precision, options, message):
    if not runtimes.is_available(backend):
        pytest.skip(f"{backend} is not installed")
    with pytest.raises(InvalidInputError, match=message):
        make_encoder(copy.deepcopy(small_model), backend, precision=precision, **options)


def test_int8_without_nncf_says_what_to_install(small_model, monkeypatch):
    real = runtimes.importlib.util.find_spec
    monkeypatch.setattr(
        runtimes.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "nncf" else real(name, *args),
    )
    with pytest.raises(InvalidInputError, match=r"needs nncf.*repvit-sam\[int8\]"):
        make_encoder(copy.deepcopy(small_model), "auto", precision="int8")


@pytest.mark.parametrize("backend", ["torch", "openvino", "auto"])
def test_bf16_is_refused_on_a_cpu_without_native_bf16(small_model, monkeypatch, backend):
    monkeypatch.setattr(backends, "cpu_flags", lambda: frozenset({"avx2", "fma", "avx512f"}))
    with pytest.raises(InvalidInputError, match="precision 'bf16' needs a CUDA device or a CPU"):
        make_encoder(copy.deepcopy(small_model), backend, precision="bf16")


@pytest.mark.parametrize("flag", runtimes.BF16_FLAGS)
def test_bf16_runs_on_a_cpu_with_native_bf16(small_model, monkeypatch, flag, photos):
    monkeypatch.setattr(backends, "cpu_flags", lambda: frozenset({"avx2", flag}))
    with pytest.raises(InvalidInputError, match="not 'onnxruntime'"):
        make_encoder(copy.deepcopy(small_model), "onnxruntime", precision="bf16")
    encoder = make_encoder(copy.deepcopy(small_model), "torch", precision="bf16")
    images = encoder_input(small_model, photos[0])
    with torch.inference_mode():
        expected = small_model.image_encoder(images)
    actual = encoder(images)
    assert encoder.name == "torch-bf16" and actual.dtype == torch.float32
    # bf16 keeps 8 significant bits: about 0.4% per value, a few % through the network.
    assert 1e-5 < relative_error(actual, expected) <= 0.1
