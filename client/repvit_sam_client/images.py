"""Images as the bytes the service decodes: files and encoded bytes as they are, pixels as PNG."""

from __future__ import annotations

import io
import os
from typing import Any, Union

import numpy as np
from PIL import Image

__all__ = ["ImageInput", "encode_image"]

ImageInput = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", Image.Image, np.ndarray]

# Array layouts PNG stores losslessly; the service converts them (grey, alpha, 16-bit) itself.
_PNG_ARRAYS = {np.dtype(np.uint8): (2, 3), np.dtype(np.uint16): (2,), np.dtype(bool): (2,)}


def encode_image(image: Any) -> bytes:
    """Encoded image bytes for an upload.

    Args:
        image: Encoded bytes (sent as they are), a path (the file's bytes), a PIL image, or an
            HxW / HxWx3 / HxWx4 uint8 array (HxW uint16 and bool too), sent as PNG.

    Raises:
        TypeError: ``image`` is of none of these kinds.
        ValueError: An array of another shape or dtype (convert it to uint8 first).
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as stream:
            return stream.read()
    if isinstance(image, np.ndarray):
        ndims = _PNG_ARRAYS.get(image.dtype, ())
        if image.ndim not in ndims or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise ValueError(
                f"image array must be HxW, HxWx3 or HxWx4 uint8 (or HxW uint16/bool), got "
                f"shape {image.shape} dtype {image.dtype}"
            )
        image = Image.fromarray(np.ascontiguousarray(image))
    if isinstance(image, Image.Image):
        if image.mode not in ("1", "L", "LA", "I;16", "P", "RGB", "RGBA"):
            image = image.convert("RGB")
        stream = io.BytesIO()
        image.save(stream, format="PNG")
        return stream.getvalue()
    raise TypeError(
        f"image must be bytes, a path, a PIL image or a numpy array, got {type(image).__name__}"
    )
