"""Caches of image embeddings and decoder logits, bounded by bytes.

``EmbeddingCache`` is the interface the service uses; ``MemoryCache`` keeps entries in this
process (the default). ``TieredCache`` puts a ``MemoryCache`` (the near cache) in front of a
shared backend (``redis_cache.RedisCache``, for several replicas): reads try the near cache
first, writes go to both, and the service keeps answering from the near cache while the shared
backend is unreachable.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from repvit_sam import ImageEmbedding

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheEntry:
    """One cached value and what the service needs to know about it.

    Attributes:
        value: An ``ImageEmbedding`` (embeddings) or a float32 array (logits).
        meta: Small JSON-able facts: image size, scores, the embedding a result belongs to.
    """

    value: ImageEmbedding | np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return int(self.value.nbytes)


@dataclass(frozen=True)
class BackendStats:
    """The state of a shared backend behind the near cache.

    Attributes:
        name: "redis".
        up: Whether the last call to it succeeded.
        errors: Calls that failed since start (connection refused, timeout, bad value).
        hits: Near-cache misses that the backend answered.
        misses: Near-cache misses that the backend did not answer either.
        used_bytes: The backend's memory in use, as it last reported (None before the first
            check).
        max_bytes: The backend's memory limit (0: none, None: unknown).
    """

    name: str
    up: bool
    errors: int
    hits: int
    misses: int
    used_bytes: int | None = None
    max_bytes: int | None = None


@dataclass(frozen=True)
class CacheStats:
    """Counters since start, and the current content of this process's (near) cache."""

    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int
    max_bytes: int
    backend: BackendStats | None = None


class EmbeddingCache(abc.ABC):
    """Key-value store of ``CacheEntry`` objects; implementations must be thread-safe."""

    @abc.abstractmethod
    def get(self, key: str) -> CacheEntry | None:
        """The entry, or None if absent, expired or evicted."""

    @abc.abstractmethod
    def put(self, key: str, entry: CacheEntry) -> bool:
        """Stores ``entry``; False when it cannot be kept (larger than the whole cache)."""

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """Drops ``key``; False if it was not there."""

    @abc.abstractmethod
    def stats(self) -> CacheStats:
        """Hit/miss/eviction counters and current size, for /metrics."""

    def check(self) -> bool | None:
        """Probes a shared backend (reconnecting if it was down): None when there is none."""
        return None

    def close(self) -> None:
        """Releases connections; the in-process cache has none."""
        return None


class MemoryCache(EmbeddingCache):
    """An in-process LRU cache bounded by the bytes of its values, with an optional TTL.

    Args:
        max_bytes: Total bytes of values kept; the least recently used go first.
        ttl_seconds: Entries older than this are treated as absent; None for no expiry.
        clock: Monotonic seconds, replaceable in tests.
    """

    def __init__(
        self,
        max_bytes: int,
        ttl_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be > 0 or None, got {ttl_seconds}")
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[str, tuple[CacheEntry, float]] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = self._evictions = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> CacheEntry | None:
        with self._lock:
            item = self._entries.get(key)
            if item is not None and self._expired(item[1]):
                self._remove(key)
                self._evictions += 1
                item = None
            if item is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return item[0]

    def put(self, key: str, entry: CacheEntry) -> bool:
        size = entry.nbytes
        with self._lock:
            if key in self._entries:
                self._remove(key)
            if size > self.max_bytes:
                logger.debug("not caching %s: %d bytes exceed the cache", key, size)
                return False
            while self._bytes + size > self.max_bytes:
                _, (evicted, _) = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes
                self._evictions += 1
            self._entries[key] = (entry, self._clock())
            self._bytes += size
            return True

    def delete(self, key: str) -> bool:
        with self._lock:
            if key not in self._entries:
                return False
            self._remove(key)
            return True

    def peek(self, key: str) -> CacheEntry | None:
        """The entry if present and fresh, without counting a hit or refreshing its recency."""
        with self._lock:
            item = self._entries.get(key)
            return None if item is None or self._expired(item[1]) else item[0]

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                entries=len(self._entries),
                bytes=self._bytes,
                max_bytes=self.max_bytes,
            )

    def _expired(self, stored_at: float) -> bool:
        return self.ttl_seconds is not None and self._clock() - stored_at > self.ttl_seconds

    def _remove(self, key: str) -> None:
        entry, _ = self._entries.pop(key)
        self._bytes -= entry.nbytes


class TieredCache(EmbeddingCache):
    """A near ``MemoryCache`` in front of a shared backend, which may be down at any time.

    The backend must not raise: it answers None/False when unreachable (``RedisCache`` does,
    and counts the error). Values read from the backend are kept in the near cache. Once
    ``check()`` finds the backend back, it catches up on what it missed while down, so that
    other replicas see the same: deletes made meanwhile are made there too (a backend that was
    only unreachable, not restarted, still holds the deleted value), and values written
    meanwhile are written there (if still in the near cache).

    Args:
        near: This process's cache.
        far: The shared backend.
    """

    def __init__(self, near: MemoryCache, far: EmbeddingCache) -> None:
        self.near = near
        self.far = far
        self._unshared: set[str] = set()
        self._undeleted: set[str] = set()
        self._lock = threading.Lock()

    def get(self, key: str) -> CacheEntry | None:
        entry = self.near.get(key)
        if entry is None:
            entry = self.far.get(key)
            if entry is not None:
                self.near.put(key, entry)
        return entry

    def put(self, key: str, entry: CacheEntry) -> bool:
        kept_near = self.near.put(key, entry)
        shared = self.far.put(key, entry)
        with self._lock:
            self._undeleted.discard(key)  # this value replaces the deleted one
            if kept_near and not shared and not self._far_up():
                self._unshared.add(key)
            else:
                self._unshared.discard(key)
        return shared or kept_near

    def delete(self, key: str) -> bool:
        deleted_near = self.near.delete(key)
        deleted_far = self.far.delete(key)
        with self._lock:
            self._unshared.discard(key)
            if not deleted_far and not self._far_up():
                self._undeleted.add(key)
        return deleted_far or deleted_near

    def stats(self) -> CacheStats:
        near = self.near.stats()
        return CacheStats(
            hits=near.hits,
            misses=near.misses,
            evictions=near.evictions,
            entries=near.entries,
            bytes=near.bytes,
            max_bytes=near.max_bytes,
            backend=self.far.stats().backend,
        )

    def check(self) -> bool | None:
        up = self.far.check()
        if up:
            self._delete_again()
            self._share_again()
        return up

    def close(self) -> None:
        self.far.close()

    def _far_up(self) -> bool:
        backend = self.far.stats().backend
        return backend is None or backend.up

    def _delete_again(self) -> None:
        """Deletes from the backend what was deleted here while it was down."""
        with self._lock:
            keys, self._undeleted = self._undeleted, set()
        for key in keys:
            if not self.far.delete(key) and not self._far_up():  # down again: next check
                with self._lock:
                    self._undeleted.add(key)
        if keys:
            logger.info("replayed %d cache deletes made while the backend was down", len(keys))

    def _share_again(self) -> None:
        """Writes what was kept only here while the backend was down."""
        with self._lock:
            keys, self._unshared = self._unshared, set()
        shared = 0
        for key in keys:
            entry = self.near.peek(key)
            if entry is None:
                continue
            if self.far.put(key, entry):
                shared += 1
            elif not self._far_up():  # down again: try at the next check
                with self._lock:
                    self._unshared.add(key)
        if shared:
            logger.info("shared %d cache entries written while the backend was down", shared)
