from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from repvit_sam import ImageTooLargeError, InvalidImageError, load_image


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF", "BMP"])
def test_formats_decode_to_rgb(rgb_image, fmt):
    out = load_image(_encode(Image.fromarray(rgb_image), fmt))
    assert out.shape == rgb_image.shape and out.dtype == np.uint8
    if fmt in ("PNG", "TIFF", "BMP"):
        np.testing.assert_array_equal(out, rgb_image)


def test_exif_orientation_is_applied(rgb_image):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees clockwise
    out = load_image(_encode(Image.fromarray(rgb_image), "JPEG", exif=exif, quality=95))
    assert out.shape == (160, 120, 3)


def test_mode_conversions(rgb_image):
    gray = load_image(_encode(Image.fromarray(rgb_image[..., 0]), "PNG"))
    assert gray.shape == (120, 160, 3) and np.array_equal(gray[..., 0], gray[..., 2])
    rgba = np.dstack([rgb_image, np.full(rgb_image.shape[:2], 7, np.uint8)])
    np.testing.assert_array_equal(load_image(_encode(Image.fromarray(rgba), "PNG")), rgb_image)
    palette = Image.fromarray(rgb_image).convert("P", palette=Image.Palette.ADAPTIVE)
    assert load_image(_encode(palette, "PNG")).shape == (120, 160, 3)
    sixteen = rgb_image[..., 1].astype(np.uint16) * 257
    out = load_image(_encode(Image.fromarray(sixteen), "PNG"))
    np.testing.assert_array_equal(out[..., 0], rgb_image[..., 1])


def test_arrays(rgb_image):
    np.testing.assert_array_equal(load_image(rgb_image), rgb_image)
    assert load_image(rgb_image[..., 0]).shape == (120, 160, 3)
    assert load_image(rgb_image[..., :1]).shape == (120, 160, 3)
    np.testing.assert_array_equal(load_image(np.dstack([rgb_image, rgb_image[..., :1]])), rgb_image)
    assert load_image(np.ones((4, 4), bool))[0, 0, 0] == 255
    assert load_image(np.full((4, 4, 3), 65535, np.uint16))[0, 0, 0] == 255
    # np.array of Python ints is int64: 8-bit values, not 16-bit ones divided by 257.
    np.testing.assert_array_equal(load_image(rgb_image.astype(np.int64)), rgb_image)
    assert load_image(np.full((4, 4, 3), 200, np.int32))[0, 0, 0] == 200
    for out_of_range in (300, -1):
        with pytest.raises(InvalidImageError, match=r"8-bit values 0\.\.255.*uint16"):
            load_image(np.full((4, 4, 3), out_of_range))


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_float_images_in_either_range(rgb_image, scale):
    gray = rgb_image[..., 0].astype(np.float32) / 255.0 * scale
    out = load_image(_encode(Image.fromarray(gray, mode="F"), "TIFF"))
    np.testing.assert_array_equal(out[..., 0], rgb_image[..., 0])


def test_decoder_errors_of_any_kind_are_invalid_images():
    # A DDS file with its pixel-format flags zeroed: Pillow raises NotImplementedError.
    dds = bytearray(_encode(Image.new("RGB", (8, 8)), "DDS"))
    dds[80:84] = bytes(4)
    with pytest.raises(InvalidImageError, match="could not be decoded"):
        load_image(bytes(dds))


def test_paths_and_pil(tmp_path, rgb_image):
    path = tmp_path / "x.png"
    Image.fromarray(rgb_image).save(path)
    np.testing.assert_array_equal(load_image(path), rgb_image)
    np.testing.assert_array_equal(load_image(str(path)), rgb_image)
    np.testing.assert_array_equal(load_image(Image.fromarray(rgb_image)), rgb_image)
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"definitely not an image", "not a recognised image format"),
    ],
)
def test_undecodable(data, message):
    with pytest.raises(InvalidImageError, match=message):
        load_image(data)


def test_truncated(rgb_image):
    data = _encode(Image.fromarray(rgb_image), "PNG")
    with pytest.raises(InvalidImageError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])


def test_pixel_limit_and_bomb_guard(rgb_image, monkeypatch):
    data = _encode(Image.fromarray(rgb_image), "PNG")
    with pytest.raises(ImageTooLargeError, match="more than the limit 100"):
        load_image(data, max_pixels=100)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageTooLargeError):
        load_image(data)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 4, 2), np.uint8), "HxW, HxWx1, HxWx3 or HxWx4"),
        (np.zeros((4, 4, 3), np.float32), "dtype"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
    ],
)
def test_bad_arrays(array, message):
    with pytest.raises(InvalidImageError, match=message):
        load_image(array)


def test_wrong_type():
    with pytest.raises(TypeError, match="path, bytes, PIL image or numpy array"):
        load_image(42)
