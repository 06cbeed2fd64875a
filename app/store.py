"""``EmbeddingStore``: the service's typed view of the cache.

Its methods block (a shared backend does network I/O): the service calls them off the event
loop. Every value read back must carry the fingerprint of the model now loaded: a value written
by another model (an older replica during a rolling update, another checkpoint sharing the
Redis) is treated as absent, never decoded against the wrong weights. A value of this model
that is not what its id says (not an embedding, logits of another shape or without a candidate
index for each prompt) is malformed: dropped from every cache, counted, and treated as absent,
so that the request computes it again rather than failing on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from repvit_sam import ImageEmbedding
from repvit_sam.dataset.store import EmbeddingStore as PersistentStore

from .cache import CacheEntry, EmbeddingCache

logger = logging.getLogger(__name__)

EMBEDDING_PREFIX = "embedding:"
LOGITS_PREFIX = "logits:"


class EmbeddingStore:
    """Embeddings and low-res logits by id, tagged with and checked against a model fingerprint.

    Args:
        cache: Where the values live.

    Attributes:
        fingerprint: The model now loaded; values written by another are ignored.
        features_shape: 1xCxHxW of this model's embeddings, once known; others are malformed.
        logits_size: (S, S) of this model's low-res logits, once known; others are malformed.
    """

    def __init__(
        self, cache: EmbeddingCache, on_store_lookup: Callable[[str], None] | None = None
    ) -> None:
        self.cache = cache
        self.on_store_lookup = on_store_lookup
        # The persistent store behind the caches (settings.store_url), once the model is known.
        self.persistent: PersistentStore | None = None
        self.fingerprint = ""
        self.features_shape: tuple[int, ...] | None = None
        self.logits_size: tuple[int, int] | None = None

    def get_embedding(self, key: str) -> ImageEmbedding | None:
        """The embedding under ``key``, or None (absent, evicted, expired, another model's);
        a cache miss is looked up in the persistent store, and a hit there is cached."""
        entry = self._get(EMBEDDING_PREFIX + key, self._embedding_problem)
        if entry is not None:
            return entry.value
        embedding = self._from_persistent(key)
        if embedding is not None:
            self.put_embedding(key, embedding)
        return embedding

    def _from_persistent(self, key: str) -> ImageEmbedding | None:
        if self.persistent is None:
            return None
        try:
            embedding = self.persistent.get(key)
        except OSError as err:  # an unreachable object store: a miss, not a failed request
            logger.warning("embedding store %s unreadable: %s", self.persistent.url, err)
            outcome, embedding = "error", None
        else:
            if embedding is not None and self._embedding_problem(CacheEntry(embedding)):
                embedding = None
            outcome = "miss" if embedding is None else "hit"
        if self.on_store_lookup is not None:
            self.on_store_lookup(outcome)
        return embedding

    def put_embedding(self, key: str, embedding: ImageEmbedding) -> None:
        """Stores a host copy: ``cache_bytes`` budgets host memory, never a GPU's."""
        height, width = embedding.original_size
        self._put(EMBEDDING_PREFIX + key, embedding.to("cpu"), {"width": width, "height": height})

    def delete_embedding(self, key: str) -> bool:
        return self.cache.delete(EMBEDDING_PREFIX + key)

    def get_logits(self, key: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The BxCxSxS float32 logits under ``key`` and their metadata, or None."""
        entry = self._get(LOGITS_PREFIX + key, self._logits_problem)
        return None if entry is None else (entry.value, dict(entry.meta))

    def put_logits(self, key: str, logits: np.ndarray, meta: dict[str, Any]) -> None:
        self._put(LOGITS_PREFIX + key, logits, meta)

    def _get(self, key: str, problem: Callable[[CacheEntry], str | None]) -> CacheEntry | None:
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
        reason = problem(entry)
        if reason is not None:
            self.cache.discard(key, reason)
            return None
        return entry

    def _embedding_problem(self, entry: CacheEntry) -> str | None:
        if not isinstance(entry.value, ImageEmbedding):
            return f"expected an embedding, found {type(entry.value).__name__}"
        shape = tuple(entry.value.features.shape)
        if self.features_shape is not None and shape != self.features_shape:
            return f"embedding of shape {shape}, this model's are {self.features_shape}"
        return None

    def _logits_problem(self, entry: CacheEntry) -> str | None:
        logits, best = entry.value, entry.meta.get("best")
        if not isinstance(logits, np.ndarray) or logits.ndim != 4 or logits.shape[1] == 0:
            return f"expected BxCxSxS logits, found {getattr(logits, 'shape', type(logits))}"
        size = logits.shape[2:]
        if size[0] != size[1] or (self.logits_size is not None and size != self.logits_size):
            return f"logits of size {size}, this model's are {self.logits_size or 'square'}"
        prompts, candidates = logits.shape[:2]
        if not (
            isinstance(best, list)
            and len(best) == prompts
            and all(type(b) is int and 0 <= b < candidates for b in best)
        ):
            return f"best must be {prompts} candidate indices below {candidates}, got {best!r}"
        if not isinstance(entry.meta.get("embedding", ""), str):
            return f"embedding must be an id, got {entry.meta['embedding']!r}"
        return None

    def _put(self, key: str, value: ImageEmbedding | np.ndarray, meta: dict[str, Any]) -> None:
        entry = CacheEntry(value, {**meta, "fingerprint": self.fingerprint})
        self.cache.put(key, entry)
