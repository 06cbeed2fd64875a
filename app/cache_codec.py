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

    Raises:
        CorruptEntryError: Wrong magic, unreadable header, unknown dtype or kind, or a payload
            whose length does not match the declared shape.
    """
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _LENGTH.size:
        raise CorruptEntryError("not a repvit-sam cache value (bad magic)")
    start = len(MAGIC) + _LENGTH.size
    (length,) = _LENGTH.unpack_from(data, len(MAGIC))
    if length > _MAX_HEADER_BYTES or start + length > len(data):
        raise CorruptEntryError(f"header length {length} does not fit the value")
    try:
        header = json.loads(data[start : start + length])
        dtype = _DTYPES[header["dtype"]]
        shape = tuple(int(side) for side in header["shape"])
        kind, meta = header["kind"], header["meta"]
    except (ValueError, KeyError, TypeError) as err:
        raise CorruptEntryError(f"unreadable header: {err!r}") from err
    payload = memoryview(data)[start + length :]
    if min(shape, default=1) < 0 or len(payload) != math.prod(shape) * dtype.itemsize:
        raise CorruptEntryError(f"{len(payload)} payload bytes do not hold {dtype} {shape}")
    array = np.frombuffer(payload, dtype=dtype).reshape(shape).astype(np.float32)
    if kind == "array":
        return CacheEntry(array, meta)
    if kind != "embedding":
        raise CorruptEntryError(f"unknown kind {kind!r}")
    try:
        embedding = ImageEmbedding.from_numpy(
            array, tuple(header["original_size"]), tuple(header["input_size"])
        )
    except (ValueError, KeyError, TypeError) as err:
        raise CorruptEntryError(f"bad embedding geometry: {err}") from err
    return CacheEntry(embedding, meta)
