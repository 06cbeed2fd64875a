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

    Raises:
        CorruptValueError: Wrong magic, an unreadable or ill-typed header, an unknown dtype or
            kind, a shape the payload's length does not hold, or impossible image sizes.
    """
    header, payload = _split(data)
    dtype = _DTYPES.get(header.get("dtype"))  # type: ignore[arg-type]
    if dtype is None:
        raise CorruptValueError(f"unknown dtype {header.get('dtype')!r}")
    shape = _shape(header.get("shape"))
    meta = header.get("meta")
    if not isinstance(meta, dict):
        raise CorruptValueError(f"meta must be a JSON object, got {type(meta).__name__}")
    if len(payload) != math.prod(shape) * dtype.itemsize:
        raise CorruptValueError(f"{len(payload)} payload bytes do not hold {dtype} {shape}")
    array = np.frombuffer(payload, dtype=dtype).reshape(shape).astype(np.float32)
    kind = header.get("kind")
    if kind == "array":
        return array, meta
    if kind != "embedding":
        raise CorruptValueError(f"unknown kind {kind!r}")
    original_size = _size(header.get("original_size"), "original_size")
    input_size = _size(header.get("input_size"), "input_size")
    try:
        embedding = ImageEmbedding.from_numpy(array, original_size, input_size)
    except (ValueError, TypeError) as err:
        raise CorruptValueError(f"bad embedding geometry: {err}") from err
    return embedding, meta


def _split(data: bytes) -> tuple[dict[str, Any], memoryview]:
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
        header = json.loads(data[start : start + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise CorruptValueError(f"unreadable header: {err}") from err
    if not isinstance(header, dict):
        raise CorruptValueError(f"header must be a JSON object, got {type(header).__name__}")
    return header, memoryview(data)[start + length :]


def _shape(value: Any) -> tuple[int, ...]:
    if not (
        isinstance(value, list)
        and len(value) <= _MAX_DIMS
        and all(
            isinstance(side, int) and not isinstance(side, bool) and side >= 0 for side in value
        )
    ):
        raise CorruptValueError(f"shape must be a list of at most {_MAX_DIMS} sizes, got {value!r}")
    return tuple(value)


def _size(value: Any, name: str) -> tuple[int, int]:
    if not (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in value)
    ):
        raise CorruptValueError(f"{name} must be [height, width] in pixels, got {value!r}")
    return value[0], value[1]
