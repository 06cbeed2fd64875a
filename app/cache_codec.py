"""Cache entries as bytes, for shared backends: a JSON header and raw array bytes, no pickle.

Layout of one value::

    b"RVSAM1\\n"                magic and format version
    4 bytes, big-endian        length N of the header
    N bytes of UTF-8 JSON      {"kind", "dtype", "shape", "meta", and for embeddings
                               "original_size", "input_size"}
    the array's bytes          C order, little-endian float16/float32

Nothing in a value can run code when read: the header is JSON, the array is checked against
its declared dtype and shape before it is viewed. The model fingerprint travels in ``meta``;
the service compares it on every read (``store``).
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from repvit_sam import ImageEmbedding

from .cache import CacheEntry

MAGIC = b"RVSAM1\n"
_LENGTH = struct.Struct(">I")
# Only what the service stores: float32 embeddings and logits (float16 kept for GPU features).
_DTYPES = {"<f4": np.dtype("<f4"), "<f2": np.dtype("<f2")}
_MAX_HEADER_BYTES = 1 << 16
_MAX_DIMS = 8
_MAX_SIDE = 1 << 31


class CorruptEntryError(ValueError):
    """Bytes read from a shared cache are not a value written by ``encode_entry``."""


def encode_entry(entry: CacheEntry) -> bytes:
    """The entry as bytes: the header (with ``entry.meta``) and the array's raw bytes.

    Raises:
        TypeError: ``entry.meta`` is not JSON-serialisable.
    """
    header: dict[str, Any] = {"meta": dict(entry.meta)}
    if isinstance(entry.value, ImageEmbedding):
        array = entry.value.numpy()
        header.update(
            kind="embedding",
            original_size=list(entry.value.original_size),
            input_size=list(entry.value.input_size),
        )
    else:
        array = np.asarray(entry.value, dtype=np.float32)
        header["kind"] = "array"
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    header.update(dtype=array.dtype.str, shape=list(array.shape))
    text = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((MAGIC, _LENGTH.pack(len(text)), text, array.tobytes()))


def decode_entry(data: bytes) -> CacheEntry:
    """The entry ``encode_entry`` wrote; the array is a private, writable copy.

    Anything else raises: a value is read only if every field has the type and range that
    ``encode_entry`` writes, so that a damaged or foreign value is a miss, never an error later.

    Raises:
        CorruptEntryError: Wrong magic, a header that is not UTF-8 JSON of the expected fields
            (``meta`` an object, ``shape`` at most 8 sides in [0, 2**31), a known dtype and
            kind, an embedding's sizes two positive integers), or a payload whose length does
            not match the declared dtype and shape.
    """
    header, payload = _split(data)
    dtype_name = header.get("dtype")
    dtype = _DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
    if dtype is None:
        raise CorruptEntryError(f"unknown dtype {dtype_name!r}")
    shape = _sides(header.get("shape"), "shape", minimum=0, most=_MAX_DIMS)
    kind, meta = header.get("kind"), header.get("meta")
    if kind not in ("array", "embedding"):
        raise CorruptEntryError(f"unknown kind {kind!r}")
    if not isinstance(meta, dict):
        raise CorruptEntryError(f"meta must be a JSON object, got {type(meta).__name__}")
    if len(payload) != math.prod(shape) * dtype.itemsize:
        raise CorruptEntryError(f"{len(payload)} payload bytes do not hold {dtype} {shape}")
    try:  # numpy refuses some empty shapes, (2**31 - 1,) * 7 + (0,)
        array = np.frombuffer(payload, dtype=dtype).reshape(shape).astype(np.float32)
    except ValueError as err:
        raise CorruptEntryError(f"shape {shape}: {err}") from err
    if kind == "array":
        return CacheEntry(array, meta)
    original_size = _sides(header.get("original_size"), "original_size", minimum=1, most=2)
    input_size = _sides(header.get("input_size"), "input_size", minimum=1, most=2)
    if len(original_size) != 2 or len(input_size) != 2:
        raise CorruptEntryError("an embedding's original_size and input_size are (H, W) pairs")
    try:
        embedding = ImageEmbedding.from_numpy(array, original_size, input_size)
    except ValueError as err:
        raise CorruptEntryError(f"bad embedding geometry: {err}") from err
    return CacheEntry(embedding, meta)


def _split(data: bytes) -> tuple[dict[str, Any], memoryview]:
    """The JSON header (an object) and the payload after it."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _LENGTH.size:
        raise CorruptEntryError("not a repvit-sam cache value (bad magic)")
    start = len(MAGIC) + _LENGTH.size
    (length,) = _LENGTH.unpack_from(data, len(MAGIC))
    if length > _MAX_HEADER_BYTES or start + length > len(data):
        raise CorruptEntryError(f"header length {length} does not fit the value")
    try:
        header = json.loads(data[start : start + length].decode("utf-8"), parse_constant=_refuse)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise CorruptEntryError(f"unreadable header: {err!r}") from err
    if not isinstance(header, dict):
        raise CorruptEntryError(f"the header must be a JSON object, got {type(header).__name__}")
    return header, memoryview(data)[start + length :]


def _sides(value: object, name: str, *, minimum: int, most: int) -> tuple[int, ...]:
    """``value`` as a tuple of at most ``most`` integers in [minimum, 2**31)."""
    if not isinstance(value, list) or len(value) > most:
        raise CorruptEntryError(f"{name} must be a list of at most {most} integers: {value!r}")
    # bool is an int to Python, not a size to us; floats (1e20) are refused, not truncated.
    if not all(type(side) is int and minimum <= side < _MAX_SIDE for side in value):
        raise CorruptEntryError(f"{name} must hold integers in [{minimum}, 2**31): {value!r}")
    return tuple(value)


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")
