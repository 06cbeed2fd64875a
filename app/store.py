"""``EmbeddingStore``: the service's typed view of the cache.

Its methods block (a shared backend does network I/O): the service calls them off the event
loop. Every value read back must carry the fingerprint of the model now loaded: a value written
by another model (an older replica during a rolling update, another checkpoint sharing the
Redis) is treated as absent, never decoded against the wrong weights.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from repvit_sam import ImageEmbedding

from .cache import CacheEntry, EmbeddingCache

logger = logging.getLogger(__name__)

EMBEDDING_PREFIX = "embedding:"
LOGITS_PREFIX = "logits:"


class EmbeddingStore:
    """Embeddings and low-res logits by id, tagged with and checked against a model fingerprint.

    Args:
        cache: Where the values live.
    """

    def __init__(self, cache: EmbeddingCache) -> None:
        self.cache = cache
        self.fingerprint = ""

    def get_embedding(self, key: str) -> ImageEmbedding | None:
        """The embedding under ``key``, or None (absent, evicted, expired, another model's)."""
        entry = self._get(EMBEDDING_PREFIX + key)
        if entry is None or not isinstance(entry.value, ImageEmbedding):
            return None
        return entry.value

    def put_embedding(self, key: str, embedding: ImageEmbedding) -> None:
        """Stores a host copy: ``cache_bytes`` budgets host memory, never a GPU's."""
        height, width = embedding.original_size
        self._put(EMBEDDING_PREFIX + key, embedding.to("cpu"), {"width": width, "height": height})

    def delete_embedding(self, key: str) -> bool:
        return self.cache.delete(EMBEDDING_PREFIX + key)

    def get_logits(self, key: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The BxCxSxS float32 logits under ``key`` and their metadata, or None."""
        entry = self._get(LOGITS_PREFIX + key)
        if entry is None or not isinstance(entry.value, np.ndarray):
            return None
        return entry.value, dict(entry.meta)

    def put_logits(self, key: str, logits: np.ndarray, meta: dict[str, Any]) -> None:
        self._put(LOGITS_PREFIX + key, logits, meta)

    def _get(self, key: str) -> CacheEntry | None:
        entry = self.cache.get(key)
        if entry is None:
            return None
        found = entry.meta.get("fingerprint")
        if found != self.fingerprint:
            logger.warning(
                "ignoring cached %s: written by model %s, this replica runs %s",
                key,
                found,
                self.fingerprint,
            )
            return None
        return entry

    def _put(self, key: str, value: ImageEmbedding | np.ndarray, meta: dict[str, Any]) -> None:
        entry = CacheEntry(value, {**meta, "fingerprint": self.fingerprint})
        self.cache.put(key, entry)
