"""Embeddings and arrays as bytes: a JSON header and the raw array, never pickle.

The one value format of the project: the HTTP service's shared cache (Redis) and the persistent
embedding store of dataset jobs (``repvit_sam.dataset``) hold the same bytes. Layout::

    b"RVSAM1\\n"                magic and format version
    4 bytes, big-endian        length N of the header
    N bytes of UTF-8 JSON      {"kind", "dtype", "shape", "meta", and for embeddings
                               "original_size", "input_size"}
    the array's bytes          C order, little-endian float16/float32

Nothing in a value can run code when read: the header is JSON, and every field is checked
(types, sizes, the payload's length against dtype and shape) before the array is viewed. The
model fingerprint travels in ``meta``; readers compare it with the model they run.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from .embedding import ImageEmbedding

__all__ = ["MAGIC", "CorruptValueError", "decode_value", "encode_value"]

MAGIC = b"RVSAM1\n"
_LENGTH = struct.Struct(">I")
# Only what is stored: float32 embeddings and logits (float16 kept for GPU features).
_DTYPES = {"<f4": np.dtype("<f4"), "<f2": np.dtype("<f2")}
_MAX_HEADER_BYTES = 1 << 16
_MAX_DIMS = 8
_MAX_SIDE = 1 << 31

Value = ImageEmbedding | np.ndarray


class CorruptValueError(ValueError):
    """Bytes that are not a value ``encode_value`` wrote (or were damaged since)."""


def encode_value(value: Value, meta: Mapping[str, Any]) -> bytes:
    """The value as bytes, with ``meta`` (small JSON-able facts) in its header.

    Raises:
        TypeError: ``meta`` is not JSON-serialisable.
    """
    header: dict[str, Any] = {"meta": dict(meta)}
    if isinstance(value, ImageEmbedding):
        array = value.numpy()
        header.update(
            kind="embedding",
            original_size=list(value.original_size),
            input_size=list(value.input_size),
        )
    else:
        array = np.asarray(value, dtype=np.float32)
        header["kind"] = "array"
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    header.update(dtype=array.dtype.str, shape=list(array.shape))
    text = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((MAGIC, _LENGTH.pack(len(text)), text, array.tobytes()))


def decode_value(data: bytes) -> tuple[Value, dict[str, Any]]:
    """The value and meta ``encode_value`` wrote; the array is a private float32 copy.

    Anything else raises: a value is read only if every field has the type and range that
    ``encode_value`` writes, so that a damaged or foreign value is a miss, never an error later.

    Raises:
        CorruptValueError: Wrong magic, a header that is not UTF-8 JSON of the expected fields
            (``meta`` an object, ``shape`` at most 8 sides in [0, 2**31), a known dtype and
            kind, an embedding's sizes two positive integers), or a payload whose length does
            not match the declared dtype and shape.
    """
    header, payload = _split(data)
    dtype_name = header.get("dtype")
    dtype = _DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
    if dtype is None:
        raise CorruptValueError(f"unknown dtype {dtype_name!r}")
    shape = _sides(header.get("shape"), "shape", minimum=0, most=_MAX_DIMS)
    kind, meta = header.get("kind"), header.get("meta")
    if kind not in ("array", "embedding"):
        raise CorruptValueError(f"unknown kind {kind!r}")
    if not isinstance(meta, dict):
        raise CorruptValueError(f"meta must be a JSON object, got {type(meta).__name__}")
    if len(payload) != math.prod(shape) * dtype.itemsize:
        raise CorruptValueError(f"{len(payload)} payload bytes do not hold {dtype} {shape}")
    try:  # numpy refuses some empty shapes, (2**31 - 1,) * 7 + (0,)
        array = np.frombuffer(payload, dtype=dtype).reshape(shape).astype(np.float32)
    except ValueError as err:
        raise CorruptValueError(f"shape {shape}: {err}") from err
    if kind == "array":
        return array, meta
    original_size = _sides(header.get("original_size"), "original_size", minimum=1, most=2)
    input_size = _sides(header.get("input_size"), "input_size", minimum=1, most=2)
    if len(original_size) != 2 or len(input_size) != 2:
        raise CorruptValueError("an embedding's original_size and input_size are (H, W) pairs")
    try:
        embedding = ImageEmbedding.from_numpy(array, original_size, input_size)
    except ValueError as err:
        raise CorruptValueError(f"bad embedding geometry: {err}") from err
    return embedding, meta


def _split(data: bytes) -> tuple[dict[str, Any], memoryview]:
    """The JSON header (an object) and the payload after it."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CorruptValueError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _LENGTH.size:
        raise CorruptValueError("not a repvit-sam value (bad magic)")
    start = len(MAGIC) + _LENGTH.size
    (length,) = _LENGTH.unpack_from(data, len(MAGIC))
    if length > _MAX_HEADER_BYTES or start + length > len(data):
        raise CorruptValueError(f"header length {length} does not fit the value")
    try:
        header = json.loads(data[start : start + length].decode("utf-8"), parse_constant=_refuse)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise CorruptValueError(f"unreadable header: {err!r}") from err
    if not isinstance(header, dict):
        raise CorruptValueError(f"the header must be a JSON object, got {type(header).__name__}")
    return header, memoryview(data)[start + length :]


def _sides(value: object, name: str, *, minimum: int, most: int) -> tuple[int, ...]:
    """``value`` as a tuple of at most ``most`` integers in [minimum, 2**31)."""
    if not isinstance(value, list) or len(value) > most:
        raise CorruptValueError(f"{name} must be a list of at most {most} integers: {value!r}")
    # bool is an int to Python, not a size to us; floats (1e20) are refused, not truncated.
    if not all(type(side) is int and minimum <= side < _MAX_SIDE for side in value):
        raise CorruptValueError(f"{name} must hold integers in [{minimum}, 2**31): {value!r}")
    return tuple(value)


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")
