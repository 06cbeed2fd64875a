"""Turning files, bytes, PIL images and arrays into HxWx3 uint8 RGB arrays."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageTooLargeError, InvalidImageError

# The file suffixes the commands pick up from a folder of images.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray


def load_image(source: ImageSource, *, max_pixels: int | None = None) -> np.ndarray:
    """Reads an image as an HxWx3 uint8 RGB array.

    Files and bytes are decoded by PIL with its decompression-bomb guard on, and their EXIF
    orientation is applied. Conversions: grayscale is replicated to three channels, palette
    images are expanded, the alpha channel of RGBA/LA images is dropped, 16-bit images are scaled
    to 8 bits, float images to 0..255 (from 0..1 where no value exceeds 1). Arrays may be HxW,
    HxWx1, HxWx3 or HxWx4, of dtype uint8, uint16 (16-bit), another integer type holding 0..255,
    or bool.

    Args:
        source: A path, encoded bytes (JPEG, PNG, WebP, TIFF, BMP...), a PIL image or an array.
        max_pixels: Reject images with more pixels than this (checked before decoding pixels).

    Raises:
        InvalidImageError: Not decodable, truncated, empty, or of an unsupported shape/dtype.
        ImageTooLargeError: More pixels than ``max_pixels`` or PIL's bomb limit.
        FileNotFoundError: A path that does not exist.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, Image.Image):
        return _from_pil(source, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise InvalidImageError("image is empty (0 bytes)")
        return _decode(io.BytesIO(bytes(source)), "image bytes", max_pixels)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        with path.open("rb") as stream:
            return _decode(stream, str(path), max_pixels)
    raise TypeError(
        f"image must be a path, bytes, PIL image or numpy array, got {type(source).__name__}"
    )


def _decode(stream: io.BufferedIOBase, where: str, max_pixels: int | None) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                _check_pixels(image, max_pixels)
                image.load()
                return _from_pil(image, max_pixels)
    except InvalidImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageTooLargeError(f"{where} is too large to decode safely: {err}") from err
    except UnidentifiedImageError as err:
        raise InvalidImageError(f"{where} is not a recognised image format") from err
    except MemoryError:
        raise
    except Exception as err:  # PIL plugins raise anything (NotImplementedError...) on corrupt files
        raise InvalidImageError(
            f"{where} could not be decoded (truncated or corrupt): {err}"
        ) from err


def _check_pixels(image: Image.Image, max_pixels: int | None) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImageError(f"image is empty: {width}x{height}")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height} pixels, more than the limit {max_pixels}"
        )


def _from_pil(image: Image.Image, max_pixels: int | None) -> np.ndarray:
    _check_pixels(image, max_pixels)
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 32-bit "I" images hold 16-bit data (PNG, TIFF): read as such, like "I;16".
        return _from_array(np.clip(np.asarray(image), 0, 65535).astype(np.uint16))
    if image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float32))
        # Float images hold 0..1 (most tools) or 0..255.
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        return _from_array(np.round(np.clip(values * scale, 0, 255)).astype(np.uint8))
    if image.mode != "RGB":
        image = image.convert("RGBA" if image.mode in ("P", "PA") else image.mode).convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def _from_array(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InvalidImageError(
            f"image array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {array.shape}"
        )
    if min(array.shape[:2]) < 1:
        raise InvalidImageError(f"image is empty: shape {array.shape}")
    array = array[..., :3]
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        array = np.round(array.astype(np.float32) / 257.0).astype(np.uint8)
    elif array.dtype != np.uint8 and np.issubdtype(array.dtype, np.integer):
        # np.array of Python ints is int64: 8-bit values, unless stated as uint16.
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise InvalidImageError(
                f"image array of dtype {array.dtype} must hold 8-bit values 0..255, got "
                f"{low}..{high}; pass 16-bit images as uint16"
            )
        array = array.astype(np.uint8)
    elif array.dtype != np.uint8:
        raise InvalidImageError(
            f"image array must have an integer dtype (uint8, uint16, int...) or bool, got "
            f"{array.dtype}; scale floats to 0..255 and cast to uint8"
        )
    return np.ascontiguousarray(array)
