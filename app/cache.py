"""Caches of image embeddings and decoder logits, bounded by bytes.

``EmbeddingCache`` is the interface the service uses; ``MemoryCache`` keeps entries in this
process (the default). ``TieredCache`` puts a ``MemoryCache`` (the near cache) in front of a
shared backend (``redis_cache.RedisCache``, for several replicas): reads try the near cache
first, writes go to both (to the backend from a background thread, ``cache_writer``), deletes
reach the other replicas' near caches through the backend's invalidation channel, and the
service keeps answering from the near cache while the shared backend is unreachable.

A reader that finds a value it cannot use (``EmbeddingStore`` checks kinds and shapes) calls
``discard``: the value is dropped everywhere and counted (``CacheStats.corrupt``).
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

from .cache_writer import SharedWriter

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
        errors: Calls that failed since start (connection refused, timeout).
        hits: Near-cache misses that the backend answered.
        misses: Near-cache misses that the backend did not answer either (malformed values
            included).
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
    listening: bool = False


@dataclass(frozen=True)
class CacheStats:
    """Counters since start, and the current content of this process's (near) cache.

    Attributes:
        corrupt: Malformed values found and dropped (undecodable bytes, a Redis key of another
            type, a value of the wrong kind or shape).
        writes_dropped: Writes to the shared backend refused because its queue was full.
        invalidations: Deletes announced by other replicas (each dropped here if present).
    """

    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int
    max_bytes: int
    backend: BackendStats | None = None
    corrupt: int = 0
    writes_dropped: int = 0
    invalidations: int = 0


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
    def discard(self, key: str, reason: str) -> None:
        """Drops a value a reader found malformed (``reason`` says how), and counts it."""

    @abc.abstractmethod
    def stats(self) -> CacheStats:
        """Hit/miss/eviction counters and current size, for /metrics."""

    def subscribe(self, callback: Callable[[str], None]) -> bool:
        """Calls ``callback(key)`` from a background thread for every key another replica
        deletes; False when there is no such channel (the in-process cache)."""
        return False

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
        self._hits = self._misses = self._evictions = self._corrupt = 0
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

    def discard(self, key: str, reason: str) -> None:
        logger.error("dropping malformed cache value %s: %s", key, reason)
        with self._lock:
            self._corrupt += 1
            if key in self._entries:
                self._remove(key)

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
                corrupt=self._corrupt,
            )

    def _expired(self, stored_at: float) -> bool:
        return self.ttl_seconds is not None and self._clock() - stored_at > self.ttl_seconds

    def _remove(self, key: str) -> None:
        entry, _ = self._entries.pop(key)
        self._bytes -= entry.nbytes


class TieredCache(EmbeddingCache):
    """A near ``MemoryCache`` in front of a shared backend, which may be down at any time.

    The backend must not raise: it answers None/False when unreachable (``RedisCache`` does,
    and counts the error). Values read from the backend are kept in the near cache. Writes to
    the backend run in a background thread (``SharedWriter``): ``put`` waits for its write at
    most ``write_wait_seconds``. A delete here reaches the other replicas' near caches through
    the backend's invalidation channel (``subscribe``); while that channel is down, their copies
    last until the near cache's TTL, which bounds how long a deleted value is still answered.

    Once ``check()`` finds the backend back, it catches up on what it missed while down, so
    that other replicas see the same: deletes made meanwhile are made there too (a backend that
    was only unreachable, not restarted, still holds the deleted value), and values written
    meanwhile (or whose write was dropped) are written there, if still in the near cache.

    Args:
        near: This process's cache.
        far: The shared backend.
        write_queue_bytes: Bytes of values waiting to be written to ``far`` at most; writes
            beyond are dropped and counted (and shared at the next ``check()``).
        write_wait_seconds: How long ``put`` waits for its write to ``far``.
        listen: Subscribe to ``far``'s invalidations (deletes made by other replicas).
    """

    def __init__(
        self,
        near: MemoryCache,
        far: EmbeddingCache,
        *,
        write_queue_bytes: int = 256 << 20,
        write_wait_seconds: float = 0.2,
        listen: bool = True,
    ) -> None:
        if write_wait_seconds < 0:
            raise ValueError(f"write_wait_seconds must be >= 0, got {write_wait_seconds}")
        self.near = near
        self.far = far
        self.write_wait_seconds = write_wait_seconds
        self._writer = SharedWriter(far.put, write_queue_bytes, self._written)
        self._unshared: set[str] = set()
        self._undeleted: set[str] = set()
        self._corrupt = self._invalidations = 0
        self._lock = threading.Lock()
        if listen:
            far.subscribe(self._invalidate)

    @property
    def pending_writes(self) -> int:
        """Writes to the backend queued or in progress."""
        return self._writer.pending

    def get(self, key: str) -> CacheEntry | None:
        entry = self.near.get(key)
        if entry is None:
            seen = self._invalidations
            entry = self.far.get(key)
            # A delete that arrived during the read may be of this value: do not keep it.
            if entry is not None and self._invalidations == seen:
                self.near.put(key, entry)
        return entry

    def put(self, key: str, entry: CacheEntry) -> bool:
        kept_near = self.near.put(key, entry)
        with self._lock:
            self._undeleted.discard(key)  # this value replaces the deleted one
            self._unshared.discard(key)
        write = self._writer.submit(key, entry)
        if write is None:  # the queue is full: share it at the next check
            with self._lock:
                if kept_near:
                    self._unshared.add(key)
            return kept_near
        return self._writer.wait(write, self.write_wait_seconds) or kept_near

    def delete(self, key: str) -> bool:
        self._writer.cancel(key)
        deleted_near = self.near.delete(key)
        deleted_far = self.far.delete(key)  # ... and tells the other replicas
        with self._lock:
            self._unshared.discard(key)
            if not deleted_far and not self._far_up():
                self._undeleted.add(key)
        return deleted_far or deleted_near

    def discard(self, key: str, reason: str) -> None:
        logger.error("dropping malformed cache value %s: %s", key, reason)
        with self._lock:
            self._corrupt += 1
        self.delete(key)

    def stats(self) -> CacheStats:
        near, far = self.near.stats(), self.far.stats()
        with self._lock:
            corrupt, invalidations = self._corrupt, self._invalidations
        return CacheStats(
            hits=near.hits,
            misses=near.misses,
            evictions=near.evictions,
            entries=near.entries,
            bytes=near.bytes,
            max_bytes=near.max_bytes,
            backend=far.backend,
            corrupt=corrupt + near.corrupt + far.corrupt,
            writes_dropped=self._writer.dropped,
            invalidations=invalidations,
        )

    def check(self) -> bool | None:
        up = self.far.check()
        if up:
            self._delete_again()
            self._share_again()
        return up

    def close(self) -> None:
        self._writer.close(timeout=5.0)
        self.far.close()

    def _invalidate(self, key: str) -> None:
        """Another replica deleted ``key``."""
        with self._lock:
            self._invalidations += 1
            self._unshared.discard(key)
        if self.near.delete(key):
            logger.debug("dropped %s: deleted by another replica", key)

    def _written(self, key: str, shared: bool) -> None:
        """After a background write: one that failed because the backend is down is made again
        once it is back."""
        if not shared and not self._far_up() and self.near.peek(key) is not None:
            with self._lock:
                self._unshared.add(key)

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
