"""Payloads of the bad-input corpus (``bad_inputs.py``): odd, broken and oversized images and
``.npy`` files, built in memory with Pillow and numpy."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

# Images ----------------------------------------------------------------------------------------


def save(image: Image.Image, fmt: str, **options: Any) -> bytes:
    stream = io.BytesIO()
    image.save(stream, format=fmt, **options)
    return stream.getvalue()


def rgb(width: int = 64, height: int = 48) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def png(width: int = 64, height: int = 48) -> bytes:
    return save(rgb(width, height), "PNG")


def jpeg() -> bytes:
    return save(rgb(), "JPEG", quality=90)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG whose header says WIDTHxHEIGHT RGB, with the given (maybe empty) image data."""
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    data = chunk(b"IDAT", idat) if idat else b""
    return b"\x89PNG\r\n\x1a\n" + header + data + chunk(b"IEND", b"")


def png_bomb() -> bytes:
    """A small PNG of 3000x3000 black pixels (9 Mpx, over LIMITS' 1 Mpx): ~30 KB of zlib."""
    row = b"\x00" + b"\x00" * 3 * 3000
    return png_claiming(3000, 3000, zlib.compress(row * 3000, 9))


def png_text_bomb() -> bytes:
    """A valid 8x8 PNG with a zTXt chunk that inflates to 64 MiB (PIL stops at its limit)."""
    small = png(8, 8)
    text = chunk(b"zTXt", b"comment\x00\x00" + zlib.compress(b"a" * (64 << 20), 9))
    return small[:33] + text + small[33:]  # after the signature (8) and IHDR (25)


def png_bad_crc() -> bytes:
    data = bytearray(png())
    data[29] ^= 0xFF  # IHDR's CRC
    return bytes(data)


def png_without_idat() -> bytes:
    return png_claiming(16, 16)


def png_corrupt_idat() -> bytes:
    return png_claiming(16, 16, b"\x78\x9c" + b"\xff" * 64)


def mode(mode: str, **options: Any) -> Callable[[], bytes]:
    def make() -> bytes:
        image = rgb().convert(mode) if mode not in ("I;16", "F") else None
        if mode == "I;16":
            values = np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20
            image = Image.fromarray(values)  # mode I;16
        elif mode == "F":
            image = Image.fromarray(np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64))
        fmt = options.pop("fmt", "PNG")
        return save(image, fmt, **options)

    return make


def palette_transparent() -> bytes:
    image = rgb().convert("P")
    return save(image, "PNG", transparency=0)


def animated_gif() -> bytes:
    frames = [rgb().convert("P"), rgb(64, 48).rotate(90).convert("P")]
    return save(frames[0], "GIF", save_all=True, append_images=frames[1:])


def multipage_tiff() -> bytes:
    return save(rgb(), "TIFF", save_all=True, append_images=[rgb()])


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW
    return save(rgb(), "JPEG", exif=exif.tobytes())


def big(fmt: str, mode: str = "RGB", **options: Any) -> Callable[[], bytes]:
    """An image over LIMITS' 1 Mpx (1200x1000) in an upload under LIMITS' 2 MB."""
    return lambda: save(Image.new(mode, (1200, 1000)), fmt, **options)


def truncated(make: Callable[[], bytes], keep: float = 0.5) -> Callable[[], bytes]:
    return lambda: make()[: int(len(make()) * keep)]


# .npy logits ----------------------------------------------------------------------------------


def npy(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array, allow_pickle=True)
    return stream.getvalue()


def npy_header_only(shape: tuple[int, ...]) -> bytes:
    """A .npy header claiming ``shape`` float32, with 16 bytes of data."""
    header = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\x00" * 16


def logits(side: int = 64, prompts: int = 1, dtype: Any = np.float32, fill: float = 0.0):
    return lambda: npy(np.full((prompts, 1, side, side), fill, dtype=dtype))


def random_bytes(size: int) -> bytes:
    return bytes(np.random.default_rng(2).integers(0, 256, size, dtype=np.uint8))
