"""``RedisCache``: embeddings and logits shared by every replica through Redis.

Values are ``cache_codec`` bytes (JSON header + raw float32, never pickle) under
``<namespace>:<key>``, each written with ``SET ... EX ttl``. Bounds:

- Redis itself is bounded by its ``maxmemory`` with ``maxmemory-policy allkeys-lru`` (see
  docker-compose.yml); ``check()`` reads both and warns when no limit is set.
- every key expires ``ttl_seconds`` after its last write;
- a value larger than ``max_entry_bytes`` stays in this replica's near cache only.

Concurrent writers are safe without locks: a key is either content-derived (embedding ids hash
the pixels and the model fingerprint, so two replicas that embed the same image write the same
value) or random (logits ids), and ``SET`` replaces a value atomically, so a reader sees one
whole value or none; plain ``SET`` rather than ``SET NX`` so that a rewrite renews the TTL.

Redis being down never becomes an HTTP error: every call catches ``redis.RedisError`` (and
``OSError``), counts it, marks the backend down and answers as a miss; calls are not attempted
again until a backoff (doubling up to ``retry_max_seconds``) has passed, so a dead Redis costs
one socket timeout per backoff period, not one per request. ``check()`` (run periodically by
the app) reconnects on its own.

A bad value is a miss of that key only, never an error and never a down backend: bytes that do
not decode (``cache_codec``) or a key holding another Redis type (``WRONGTYPE``, a list someone
wrote there) are deleted and counted as ``corrupt``.

Deletes reach the other replicas: ``delete`` publishes the key on ``<namespace>:invalidate``
(in the same round trip as the ``DEL``), and ``subscribe`` listens there from a thread that
resubscribes after Redis restarts. Pub/sub delivers only to replicas connected at that moment,
so a replica that was cut off misses deletes: the near cache's TTL bounds those (``cache``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .cache import BackendStats, CacheEntry, CacheStats, EmbeddingCache
from .cache_codec import CorruptEntryError, decode_entry, encode_entry

logger = logging.getLogger(__name__)

T = TypeVar("T")
_FIRST_BACKOFF_SECONDS = 0.5
_EVICTING_POLICIES = ("allkeys-lru", "allkeys-lfu", "allkeys-random")
_LISTEN_POLL_SECONDS = 0.2  # how soon the listening thread notices close()


class RedisCache(EmbeddingCache):
    """A shared, byte-bounded, expiring cache in Redis that degrades to misses when Redis is down.

    Args:
        url: ``redis://[:password@]host:port/db``, ``rediss://...`` or ``unix://...``.
        namespace: Prefix of every key, so several services can share one Redis.
        ttl_seconds: Expiry of every key written; None for none (then rely on maxmemory).
        max_entry_bytes: Larger values are not written.
        socket_timeout: Seconds to connect, and to wait for each answer.
        retry_max_seconds: Longest wait between attempts while Redis is down.
        clock: Monotonic seconds, replaceable in tests.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "repvit-sam",
        ttl_seconds: float | None = 86400.0,
        max_entry_bytes: int = 64 << 20,
        socket_timeout: float = 1.0,
        retry_max_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be > 0 or None, got {ttl_seconds}")
        self.url = url
        self.namespace = namespace
        self.ttl_seconds = ttl_seconds
        self.max_entry_bytes = max_entry_bytes
        self.retry_max_seconds = retry_max_seconds
        self._clock = clock
        # One retry on a fresh connection: pooled sockets die when Redis restarts.
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self._lock = threading.Lock()
        self._up = True
        self._next_try = 0.0
        self._first_backoff = min(_FIRST_BACKOFF_SECONDS, retry_max_seconds)
        self._backoff = self._first_backoff
        self._errors = self._hits = self._misses = self._corrupt = 0
        self._used_bytes: int | None = None
        self._max_bytes: int | None = None
        self.channel = f"{namespace}:invalidate"
        self._sender = uuid.uuid4().hex  # this process's own deletes are not news to it
        self._listening = False
        self._closing = threading.Event()
        self._listener: threading.Thread | None = None

    @property
    def up(self) -> bool:
        return self._up

    def _key(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def _call(self, what: str, function: Callable[[], T], default: T, *, force: bool = False) -> T:
        """``function()``, or ``default`` when Redis is down (backing off) or the call fails."""
        with self._lock:
            if not self._up and not force and self._clock() < self._next_try:
                return default
        try:
            result = function()
        except CorruptEntryError:  # Redis answered: the key is bad, not the backend
            self._succeeded()
            raise
        except (redis.RedisError, OSError) as err:
            self._failed(what, err)
            return default
        self._succeeded()
        return result

    def _failed(self, what: str, err: Exception) -> None:
        with self._lock:
            self._errors += 1
            was_up, self._up = self._up, False
            wait = self._backoff if not was_up else self._first_backoff
            self._next_try = self._clock() + wait
            self._backoff = min(wait * 2, self.retry_max_seconds)
        if was_up:
            logger.warning(
                "Redis cache at %s unavailable (%s failed: %s); answering from the local cache "
                "and retrying in %.1fs",
                _redact(self.url),
                what,
                err,
                wait,
            )
        else:
            logger.debug("Redis still unavailable (%s: %s); next try in %.1fs", what, err, wait)

    def _succeeded(self) -> None:
        with self._lock:
            was_down, self._up = not self._up, True
            self._backoff = self._first_backoff
        if was_down:
            logger.info("Redis cache at %s reachable again", _redact(self.url))

    # EmbeddingCache ----------------------------------------------------------------------------

    def get(self, key: str) -> CacheEntry | None:
        try:
            data = self._call("GET", lambda: self._read(key), None)
            entry = None if data is None else decode_entry(data)
        except CorruptEntryError as err:
            self.discard(key, str(err))
            entry = None
        with self._lock:
            if entry is None:
                self._misses += 1
            else:
                self._hits += 1
        return entry

    def _read(self, key: str) -> bytes | None:
        try:
            return self._client.get(self._key(key))
        except redis.ResponseError as err:
            if str(err).startswith("WRONGTYPE"):
                raise CorruptEntryError(f"the key holds another Redis type ({err})") from err
            raise

    def put(self, key: str, entry: CacheEntry) -> bool:
        if entry.nbytes > self.max_entry_bytes:
            logger.debug("not sharing %s: %d bytes > max_entry_bytes", key, entry.nbytes)
            return False
        data = encode_entry(entry)
        ttl = None if self.ttl_seconds is None else max(1, round(self.ttl_seconds))
        return bool(
            self._call("SET", lambda: self._client.set(self._key(key), data, ex=ttl), False)
        )

    def delete(self, key: str) -> bool:
        """Deletes the key and announces it to the other replicas, in one round trip."""

        def delete_and_publish() -> int:
            pipeline = self._client.pipeline(transaction=False)
            pipeline.delete(self._key(key))
            pipeline.publish(self.channel, f"{self._sender} {key}")
            deleted, _ = pipeline.execute()
            return deleted

        return bool(self._call("DEL", delete_and_publish, 0))

    def discard(self, key: str, reason: str) -> None:
        logger.error("dropping malformed cache value %s: %s", key, reason)
        with self._lock:
            self._corrupt += 1
        self.delete(key)

    def stats(self) -> CacheStats:
        with self._lock:
            backend = BackendStats(
                name="redis",
                up=self._up,
                errors=self._errors,
                hits=self._hits,
                misses=self._misses,
                used_bytes=self._used_bytes,
                max_bytes=self._max_bytes,
                listening=self._listening,
            )
            corrupt = self._corrupt
        return CacheStats(0, 0, 0, 0, 0, 0, backend=backend, corrupt=corrupt)

    def subscribe(self, callback: Callable[[str], None]) -> bool:
        """Starts the thread that calls ``callback(key)`` for each key another replica
        deletes; it reconnects (backing off like the other calls) whenever Redis goes away."""
        with self._lock:
            if self._listener is not None:
                raise RuntimeError("RedisCache.subscribe takes one callback")
            self._listener = threading.Thread(
                target=self._listen, args=(callback,), name="redis-invalidations", daemon=True
            )
        self._listener.start()
        return True

    def _listen(self, callback: Callable[[str], None]) -> None:
        wait = self._first_backoff
        while not self._closing.is_set():
            pubsub = self._client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                while not self._closing.is_set():
                    message = pubsub.get_message(timeout=_LISTEN_POLL_SECONDS)
                    if message is not None and self._received(message, callback):
                        wait = self._first_backoff
            except (redis.RedisError, OSError) as err:
                log = logger.warning if self._listening else logger.debug
                log(
                    "invalidation channel %s lost (%s); deletes by other replicas reach this "
                    "one within the near cache's TTL until it is back; retrying in %.1fs",
                    self.channel,
                    err,
                    wait,
                )
            finally:
                self._listening = False
                pubsub.close()
            self._closing.wait(wait)
            wait = min(wait * 2, self.retry_max_seconds)

    def _received(self, message: dict, callback: Callable[[str], None]) -> bool:
        """Handles one pub/sub message; True once subscribed."""
        if message["type"] == "subscribe":
            self._listening = True
            logger.info("listening for deletes by other replicas on %s", self.channel)
            return True
        if message["type"] == "message":
            sender, _, key = bytes(message["data"]).decode(errors="replace").partition(" ")
            if sender != self._sender and key:
                callback(key)
        return False

    def check(self) -> bool:
        """Reads Redis's memory use and limit (a ping that also reconnects); True when up.

        While Redis is down this tries only once the backoff has passed.
        """
        info = self._call("INFO", lambda: self._client.info("memory"), None)
        if info is None:
            return False
        used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        policy = str(info.get("maxmemory_policy", ""))
        with self._lock:
            first = self._max_bytes is None
            self._used_bytes, self._max_bytes = used, limit
        if first and (limit == 0 or policy not in _EVICTING_POLICIES):
            logger.warning(
                "Redis at %s has maxmemory=%d and maxmemory-policy=%s: the shared cache is "
                "bounded only by key TTLs; run Redis with --maxmemory <bytes> "
                "--maxmemory-policy allkeys-lru",
                _redact(self.url),
                limit,
                policy or "unknown",
            )
        return True

    def close(self) -> None:
        self._closing.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
        self._client.close()


def _redact(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rsplit('@', 1)[1]}"
