"""Cache entries as bytes, for shared backends: the project's one value format
(``repvit_sam.embedding_codec``: a JSON header and the raw array, never pickle), which the
persistent embedding store of dataset jobs holds too. The model fingerprint travels in
``meta``; the service compares it on every read (``store``)."""

from __future__ import annotations

from repvit_sam.embedding_codec import MAGIC, CorruptValueError, decode_value, encode_value

from .cache import CacheEntry

__all__ = ["MAGIC", "CorruptEntryError", "decode_entry", "encode_entry"]

# Bytes read from a shared cache that are not a value written by ``encode_entry``.
CorruptEntryError = CorruptValueError


def encode_entry(entry: CacheEntry) -> bytes:
    """The entry as bytes: the header (with ``entry.meta``) and the array's raw bytes.

    Raises:
        TypeError: ``entry.meta`` is not JSON-serialisable.
    """
    return encode_value(entry.value, entry.meta)


def decode_entry(data: bytes) -> CacheEntry:
    """The entry ``encode_entry`` wrote (see ``repvit_sam.embedding_codec.decode_value``).

    Raises:
        CorruptEntryError: The bytes are not such a value, or were damaged.
    """
    value, meta = decode_value(data)
    return CacheEntry(value, meta)
