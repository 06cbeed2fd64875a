"""``EmbeddingStore``: image embeddings kept for good, in a folder or any fsspec URL.

Layout under the store's root::

    embeddings/ab/ab12...ef.rvsam   one value per embedding id (repvit_sam.embedding_codec)
    manifest.json                   {"images": {source image: embedding id}}

Values are written to a temporary name and renamed into place, so a reader never sees half a
value and a job killed mid-write leaves at most a stray ``.tmp-*`` file, never a damaged value.
A value written by another model (another checkpoint, variant, size or backend) is treated as
absent, as is one whose bytes are damaged.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from ..embedding import ImageEmbedding
from ..embedding_codec import CorruptValueError, decode_value, encode_value
from ..errors import InvalidInputError

logger = logging.getLogger(__name__)

SUFFIX = ".rvsam"
MANIFEST = "manifest.json"


def _filesystem(url: str) -> tuple[Any, str]:
    try:
        from fsspec.core import url_to_fs
    except ImportError as err:  # pragma: no cover - fsspec comes with torch
        raise InvalidInputError("an embedding store needs fsspec: pip install fsspec") from err
    try:
        return url_to_fs(url)
    except (ImportError, ValueError) as err:
        raise InvalidInputError(f"store {url!r}: {err}") from err


class EmbeddingStore:
    """The embeddings of one model, by embedding id (``repvit_sam.embedding_ids``).

    Args:
        url: A folder, or an fsspec URL (``s3://bucket/prefix``, ``gs://...``, ``memory://``)
            whose filesystem package is installed.
        fingerprint: The model's (``model_fingerprint``); values of other models are ignored.
    """

    def __init__(self, url: str, fingerprint: str) -> None:
        self.url = str(url)
        self.fingerprint = fingerprint
        self.fs, self.root = _filesystem(self.url)
        self.root = self.root.rstrip("/")

    def __reduce__(self) -> tuple[Any, ...]:
        # Sent to Ray workers by URL: each opens its own filesystem.
        return (type(self), (self.url, self.fingerprint))

    def path(self, key: str) -> str:
        if len(key) != 32 or any(c not in "0123456789abcdef" for c in key):
            raise InvalidInputError(f"embedding id must be 32 hex digits, got {key!r}")
        return f"{self.root}/embeddings/{key[:2]}/{key}{SUFFIX}"

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def get(self, key: str) -> ImageEmbedding | None:
        """The embedding under ``key``, or None: absent, damaged or another model's."""
        try:
            data = self.fs.cat_file(self.path(key))
        except FileNotFoundError:
            return None
        try:
            value, meta = decode_value(data)
        except CorruptValueError as err:
            logger.warning("ignoring stored %s: %s", key, err)
            return None
        if meta.get("fingerprint") != self.fingerprint or not isinstance(value, ImageEmbedding):
            logger.debug("ignoring stored %s: written by model %s", key, meta.get("fingerprint"))
            return None
        return value

    def put(self, key: str, embedding: ImageEmbedding) -> None:
        """Stores ``embedding`` under ``key``, atomically; an existing value is replaced."""
        height, width = embedding.original_size
        meta = {"fingerprint": self.fingerprint, "width": width, "height": height}
        self._write(self.path(key), encode_value(embedding.to("cpu"), meta))

    def manifest(self) -> dict[str, str]:
        """Source image -> embedding id, as the jobs that filled the store recorded them."""
        try:
            text = self.fs.cat_file(f"{self.root}/{MANIFEST}")
        except FileNotFoundError:
            return {}
        try:
            images = json.loads(text)["images"]
        except (ValueError, KeyError, TypeError) as err:
            raise InvalidInputError(f"store {self.url}: unreadable {MANIFEST}: {err}") from err
        return {str(source): str(key) for source, key in images.items()}

    def record(self, entries: Mapping[str, str]) -> None:
        """Adds source image -> id entries to the manifest (one writer at a time: the job's
        driver), rewriting it atomically."""
        if not entries:
            return
        images = {**self.manifest(), **entries}
        text = json.dumps({"images": images}, indent=0, sort_keys=True).encode()
        self._write(f"{self.root}/{MANIFEST}", text)

    def _write(self, path: str, data: bytes) -> None:
        folder = path.rsplit("/", 1)[0]
        self.fs.makedirs(folder, exist_ok=True)
        temporary = f"{path}.tmp-{uuid.uuid4().hex}"
        self.fs.pipe_file(temporary, data)
        try:
            self.fs.mv(temporary, path)
        except BaseException:
            self.fs.rm(temporary)
            raise
