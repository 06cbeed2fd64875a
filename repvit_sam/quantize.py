"""Reduced-precision image encoders on the CPU: int8 (NNCF + OpenVINO) and native bf16.

Neither is exact, and neither is ever the default: ``make_encoder(..., precision="int8")`` or
``"bf16"`` is an explicit choice of speed over the last decimals (``benchmarks/precision.py``
measures how far masks move).

``int8``
    Post-training static quantisation by NNCF of the fused encoder's ONNX export
    (``repvit_sam.backends``), run by OpenVINO (``[int8]`` extra). The activation ranges are
    calibrated on natural images: scikit-image's sample photos (``SAMPLE_PHOTOS``) by default,
    or the images of a folder. The quantised model is kept in the encoder cache folder beside
    the fp32 export, as ``encoder-<model digest>-int8-<calibration digest>.xml`` (and ``.bin``):
    the calibration digest covers the images' pixels and the versions of NNCF and OpenVINO, so
    another calibration set or release quantises again, and a second start with the same ones
    only compiles.
``bf16``
    On CUDA, PyTorch's autocast. On the CPU only where it is native (AVX512-BF16 or AMX-BF16,
    ``runtimes.native_bf16``): OpenVINO's bf16 inference precision, or PyTorch's CPU autocast
    with the torch backend. Elsewhere bf16 would be emulated, slower than fp32, and refused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from .errors import InvalidInputError
from .image_io import IMAGE_SUFFIXES, ImageSource, load_image
from .runtimes import distribution_version, missing_modules

logger = logging.getLogger(__name__)

# scikit-image's photographs of real scenes that ship with its wheel (no download): colour ones
# first, then greyscale ones (replicated to RGB). Its synthetic images (checkerboards, blobs,
# a colour wheel, a logo, a phantom) are left out.
SAMPLE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "rocket",
    "brick",
    "camera",
    "cell",
    "clock",
    "coins",
    "grass",
    "gravel",
    "microaneurysms",
    "moon",
    "page",
    "text",
)
COLOUR_PHOTOS = SAMPLE_PHOTOS[:7]
# The images that calibrate the int8 encoder: a folder, or images (None: SAMPLE_PHOTOS).
CalibrationSource = str | os.PathLike[str] | Sequence[ImageSource] | None


def sample_photos(names: Sequence[str] = SAMPLE_PHOTOS) -> list[np.ndarray]:
    """scikit-image's sample photos as HxWx3 uint8 RGB arrays.

    Raises:
        InvalidInputError: scikit-image is not installed.
    """
    try:
        import skimage.data
    except ImportError as err:
        raise InvalidInputError(
            "the default calibration images are scikit-image's sample photos: pip install "
            "'repvit-sam[int8]', or give calibration_images (a folder of images)"
        ) from err
    return [load_image(getattr(skimage.data, name)()) for name in names]


def folder_images(folder: str | os.PathLike[str]) -> list[np.ndarray]:
    """Every image in ``folder`` (``IMAGE_SUFFIXES``, not recursive), in name order.

    Raises:
        InvalidInputError: Not a folder, or a folder without images.
    """
    path = Path(folder)
    if not path.is_dir():
        raise InvalidInputError(f"calibration_images {str(path)!r} is not a folder")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InvalidInputError(
            f"calibration_images {str(path)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})"
        )
    return [load_image(p) for p in files]


def calibration_images(source: CalibrationSource = None) -> list[np.ndarray]:
    """The calibration set as HxWx3 uint8 RGB arrays: the sample photos for None, a folder's
    images for a path, or the given images (anything ``load_image`` reads)."""
    if source is None:
        return sample_photos()
    if isinstance(source, (str, os.PathLike)):
        return folder_images(source)
    images = [load_image(image) for image in source]
    if not images:
        raise InvalidInputError("calibration_images is empty: give at least one image")
    return images


def calibration_digest(images: Sequence[np.ndarray]) -> str:
    """Names a calibration: the images' pixels and the quantising software's versions."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(repr([distribution_version(m) for m in ("nncf", "openvino")]).encode())
    for image in images:
        digest.update(repr(image.shape).encode())
        digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


def encoder_input(model: Sam, image: np.ndarray) -> torch.Tensor:
    """The 1x3xSxS float32 input the encoder gets for an HxWx3 uint8 RGB image: resized to
    the longest side S, normalised and padded, as ``Predictor.embed`` does."""
    resized = ResizeLongestSide(model.image_encoder.img_size).apply_image(image)
    tensor = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None]
    with torch.no_grad():
        return model.preprocess(tensor.to(model.device)).to("cpu", torch.float32)


def int8_model(
    model: Sam, onnx_path: Path, calibration: CalibrationSource = None, subset_size: int = 300
) -> tuple[Path, str]:
    """The int8 quantisation of the encoder exported at ``onnx_path``, beside it.

    Quantises once per calibration: the model is ``<onnx stem>-int8-<calibration digest>.xml``
    (and ``.bin``), reused while it exists.

    Args:
        model: The RepViT-SAM model ``onnx_path`` was exported from (for the preprocessing).
        onnx_path: The fp32 export in the encoder cache folder.
        calibration: The calibration images (see ``calibration_images``).
        subset_size: Calibration images NNCF uses at most.

    Returns:
        The quantised model's ``.xml`` path and the calibration digest.

    Raises:
        InvalidInputError: NNCF or OpenVINO is missing (the message says what to install), or
            the calibration images are unusable.
    """
    missing = missing_modules("int8")
    if missing:
        raise InvalidInputError(
            f"precision 'int8' needs {' and '.join(missing)}, which cannot be imported "
            "here: pip install 'repvit-sam[int8]'"
        )
    images = calibration_images(calibration)
    digest = calibration_digest(images)
    target = onnx_path.with_name(f"{onnx_path.stem}-int8-{digest}.xml")
    if target.is_file():
        logger.info("using the int8 encoder %s", target)
    else:
        inputs = [encoder_input(model, image).numpy() for image in images]
        _quantise(onnx_path, target, inputs, subset_size)
    return target, digest


def _quantise(source: Path, target: Path, inputs: list[np.ndarray], subset_size: int) -> None:
    """Quantises the ONNX model at ``source`` to int8 and writes it at ``target`` (.xml/.bin),
    under temporary names first: a model under ``target``'s name is always whole."""
    import nncf
    import openvino

    logger.info("quantising the encoder to int8 on %d calibration images", len(inputs))
    model = openvino.Core().read_model(str(source))
    quantised = nncf.quantize(
        model,
        nncf.Dataset(inputs),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=min(subset_size, len(inputs)),
    )
    folder = tempfile.mkdtemp(dir=target.parent, prefix=".int8-")
    try:
        xml = Path(folder) / target.name
        openvino.save_model(quantised, str(xml), compress_to_fp16=False)
        os.replace(xml.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(xml, target)
    finally:
        for leftover in Path(folder).iterdir():
            leftover.unlink()
        os.rmdir(folder)
    logger.info("wrote the int8 encoder %s", target)
