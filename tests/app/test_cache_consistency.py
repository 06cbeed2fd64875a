"""The shared cache stays correct across replicas and bad values: malformed values are misses
(dropped and counted), deletes reach every replica, a key of another Redis type is a miss of
that key only, and Redis writes leave the request's path. Against a real redis-server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import redis
import torch

from repvit_sam import ImageEmbedding
from repvit_sam_server.cache import CacheEntry, MemoryCache, TieredCache
from repvit_sam_server.cache_codec import MAGIC, encode_entry
from repvit_sam_server.main import make_cache
from repvit_sam_server.redis_cache import RedisCache
from repvit_sam_server.settings import Settings
from repvit_sam_server.store import EMBEDDING_PREFIX, LOGITS_PREFIX, EmbeddingStore
from tests.process_helpers import TcpProxy

MiB = 1 << 20
FEATURES = (1, 8, 4, 4)
LOGITS = (2, 3, 16, 16)


def make_embedding(seed: int = 0) -> ImageEmbedding:
    generator = torch.Generator().manual_seed(seed)
    return ImageEmbedding(torch.randn(*FEATURES, generator=generator), (30, 40), (12, 16))


def value(header: dict, payload: bytes) -> bytes:
    text = json.dumps(header).encode()
    return MAGIC + len(text).to_bytes(4, "big") + text + payload


def embedding_value(**changes: object) -> bytes:
    """A well-formed embedding value with header fields replaced."""
    header = {
        "meta": {"fingerprint": "f", "width": 40, "height": 30},
        "kind": "embedding",
        "original_size": [30, 40],
        "input_size": [12, 16],
        "dtype": "<f4",
        "shape": list(FEATURES),
        **changes,
    }
    return value(header, np.zeros(FEATURES, "<f4").tobytes())


GOOD = embedding_value()
HEADER_END = len(MAGIC) + 4 + int.from_bytes(GOOD[len(MAGIC) : len(MAGIC) + 4], "big")
PAYLOAD = GOOD[HEADER_END:]

# Bytes that are not what encode_entry writes, though most start like it.
UNDECODABLE = {
    "empty": b"",
    "pickle": b"\x80\x04\x95pickle",
    "meta a list": embedding_value(meta=["fingerprint", "f"]),
    "meta a string": embedding_value(meta="f"),
    "meta null": embedding_value(meta=None),
    "shape 1e20 x 0": value(
        {**json.loads(GOOD[len(MAGIC) + 4 : HEADER_END]), "shape": [1e20, 0]}, b""
    ),
    "shape of floats": embedding_value(shape=[1.0, 8.0, 4.0, 4.0]),
    "shape of booleans": embedding_value(shape=[True, 8, 4, 4]),
    "shape negative": embedding_value(shape=[-1, 8, 4, 4]),
    "shape a string": embedding_value(shape="1x8x4x4"),
    "shape of 9 sides": embedding_value(shape=[1] * 9),
    "huge empty shape": value(
        {**json.loads(GOOD[len(MAGIC) + 4 : HEADER_END]), "shape": [2**31 - 1] * 7 + [0]}, b""
    ),
    "dtype float64": embedding_value(dtype="<f8"),
    "dtype object": embedding_value(dtype="|O"),
    "dtype a list": embedding_value(dtype=["<f4"]),
    "unknown kind": embedding_value(kind="pickle"),
    "original_size of 3": embedding_value(original_size=[30, 40, 1]),
    "original_size zero": embedding_value(original_size=[0, 40]),
    "input_size missing": value(
        {
            k: v
            for k, v in json.loads(GOOD[len(MAGIC) + 4 : HEADER_END]).items()
            if k != "input_size"
        },
        PAYLOAD,
    ),
    "features not 1xCxHxW": embedding_value(shape=[2, 8, 4, 2]),
    "truncated payload": GOOD[:-4],
    "trailing bytes": GOOD + b"\0",
    "header longer than the value": MAGIC + (1 << 20).to_bytes(4, "big") + b"{}",
    "header over 64 KiB": MAGIC + (1 << 17).to_bytes(4, "big") + b" " * (1 << 17),
    "header not UTF-8": MAGIC + (4).to_bytes(4, "big") + b"\xff\xfe{}" + PAYLOAD,
    "header UTF-16": value({}, b"")[: len(MAGIC)]
    + (len('{"a":1}'.encode("utf-16")).to_bytes(4, "big"))
    + '{"a":1}'.encode("utf-16"),
    "header a list": MAGIC + (2).to_bytes(4, "big") + b"[]" + PAYLOAD,
    "header nested 100000 deep": MAGIC
    + (2 * 30000).to_bytes(4, "big")
    + b"[" * 30000
    + b"]" * 30000,
    "header with NaN": MAGIC
    + len(b'{"meta": NaN}').to_bytes(4, "big")
    + b'{"meta": NaN}'
    + PAYLOAD,
}


def logits_value(logits: np.ndarray, **meta: object) -> bytes:
    return encode_entry(CacheEntry(logits, {"fingerprint": "f", **meta}))


# Decodable values of this model that are not what their id says (EmbeddingStore checks).
MISFIT = {
    "embedding id holding logits": (EMBEDDING_PREFIX, logits_value(np.zeros(LOGITS, np.float32))),
    "embedding of another shape": (
        EMBEDDING_PREFIX,
        encode_entry(
            CacheEntry(
                ImageEmbedding(torch.zeros(1, 4, 4, 4), (30, 40), (12, 16)), {"fingerprint": "f"}
            )
        ),
    ),
    "logits id holding an embedding": (LOGITS_PREFIX, embedding_value()),
    "logits of 2 dimensions": (LOGITS_PREFIX, logits_value(np.zeros((16, 16), np.float32))),
    "logits of another size": (
        LOGITS_PREFIX,
        logits_value(np.zeros((2, 3, 8, 8), np.float32), best=[0, 0]),
    ),
    "logits without best": (LOGITS_PREFIX, logits_value(np.zeros(LOGITS, np.float32))),
    "best out of range": (LOGITS_PREFIX, logits_value(np.zeros(LOGITS, np.float32), best=[0, 3])),
    "best too short": (LOGITS_PREFIX, logits_value(np.zeros(LOGITS, np.float32), best=[0])),
    "best of booleans": (
        LOGITS_PREFIX,
        logits_value(np.zeros(LOGITS, np.float32), best=[True, False]),
    ),
    "best a string": (LOGITS_PREFIX, logits_value(np.zeros(LOGITS, np.float32), best="01")),
    "embedding id a number": (
        LOGITS_PREFIX,
        logits_value(np.zeros(LOGITS, np.float32), best=[0, 1], embedding=7),
    ),
}


@pytest.fixture
def redis_client(redis_server) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_server.url)
    yield connection
    connection.close()


@pytest.fixture
def replicas(redis_server) -> Iterator[Callable[..., TieredCache]]:
    """Makes near caches in front of the test Redis (closed at the end)."""
    made: list[TieredCache] = []

    def replica(url: str | None = None, ttl: float | None = None, **options) -> TieredCache:
        clock = options.pop("clock", time.monotonic)
        socket_timeout = options.pop("socket_timeout", 0.5)
        far = RedisCache(
            url or redis_server.url, socket_timeout=socket_timeout, retry_max_seconds=0.1
        )
        made.append(TieredCache(MemoryCache(MiB, ttl, clock=clock), far, **options))
        return made[-1]

    yield replica
    for cache in made:
        cache.close()


def store_of(cache: TieredCache) -> EmbeddingStore:
    store = EmbeddingStore(cache)
    store.fingerprint, store.features_shape, store.logits_size = "f", FEATURES, LOGITS[2:]
    return store


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout:g} s"
        time.sleep(0.01)


def listening(*caches: TieredCache) -> None:
    wait_until(lambda: all(c.stats().backend.listening for c in caches), "subscription")


@pytest.mark.parametrize("bad", UNDECODABLE.values(), ids=UNDECODABLE.keys())
def test_an_undecodable_value_is_a_miss_dropped_and_counted(replicas, redis_client, bad):
    cache = replicas(listen=False)
    store = store_of(cache)
    redis_client.set("repvit-sam:embedding:e", bad)
    assert store.get_embedding("e") is None
    assert not redis_client.exists("repvit-sam:embedding:e")  # dropped from Redis...
    assert cache.near.peek("embedding:e") is None  # ... and never kept near
    stats = cache.stats()
    assert stats.corrupt == 1 and stats.backend.up and stats.backend.errors == 0
    store.put_embedding("e", make_embedding())  # computed again, it is served
    assert store.get_embedding("e") is not None


@pytest.mark.parametrize(("prefix", "bad"), MISFIT.values(), ids=MISFIT.keys())
def test_a_value_that_does_not_fit_its_id_is_a_miss_dropped_and_counted(
    replicas, redis_client, prefix, bad
):
    cache = replicas(listen=False)
    store = store_of(cache)
    redis_client.set(f"repvit-sam:{prefix}k", bad)
    found = store.get_embedding("k") if prefix == EMBEDDING_PREFIX else store.get_logits("k")
    assert found is None
    assert not redis_client.exists(f"repvit-sam:{prefix}k")
    assert cache.near.peek(prefix + "k") is None and cache.stats().corrupt == 1
    # A value written by another model is not malformed: ignored, but left for that model.
    redis_client.set(f"repvit-sam:{prefix}k", bad)
    store.fingerprint = "another model"
    assert store.get_embedding("k") is None and store.get_logits("k") is None
    assert redis_client.exists(f"repvit-sam:{prefix}k") and cache.stats().corrupt == 1


def test_good_logits_pass_the_store_checks(replicas):
    store = store_of(replicas(listen=False))
    logits = np.random.default_rng(0).normal(size=LOGITS).astype(np.float32)
    store.put_logits("l", logits, {"best": [2, 0], "embedding": "e"})
    got, meta = store_of(replicas(listen=False)).get_logits("l")  # read back from Redis
    np.testing.assert_array_equal(got, logits)
    assert meta["best"] == [2, 0]


def test_a_key_of_another_redis_type_is_a_miss_of_that_key_only(replicas, redis_client):
    cache = replicas(listen=False)
    assert cache.put("embedding:good", CacheEntry(make_embedding(), {}))
    redis_client.rpush("repvit-sam:embedding:list", b"someone else's")
    redis_client.hset("repvit-sam:embedding:hash", "a", "b")
    assert cache.get("embedding:list") is None and cache.get("embedding:hash") is None
    assert not redis_client.exists("repvit-sam:embedding:list", "repvit-sam:embedding:hash")
    stats = cache.stats()
    assert stats.backend.up and stats.backend.errors == 0 and stats.corrupt == 2
    assert cache.check() is True  # /readyz reports "ok", not "degraded"
    assert replicas(listen=False).get("embedding:good") is not None  # Redis still answers


def test_a_delete_reaches_the_other_replicas_near_cache(replicas, redis_server):
    a, b = replicas(), replicas()
    listening(a, b)
    assert a.put("embedding:e", CacheEntry(make_embedding(), {}))
    assert b.get("embedding:e") is not None and b.near.peek("embedding:e") is not None
    assert a.delete("embedding:e")
    wait_until(lambda: b.near.peek("embedding:e") is None, "B dropping the deleted key")
    assert b.get("embedding:e") is None and b.stats().invalidations == 1
    assert a.stats().invalidations == 0  # its own delete is not news to A

    redis_server.stop()  # the channel is lost; after a restart both subscribe again
    wait_until(lambda: not any(c.stats().backend.listening for c in (a, b)), "losing it")
    redis_server.start()
    listening(a, b)
    wait_until(lambda: a.check() is True, "A reconnecting")
    assert a.put("embedding:f", CacheEntry(make_embedding(1), {}))
    assert b.get("embedding:f") is not None
    assert a.delete("embedding:f")
    wait_until(lambda: b.near.peek("embedding:f") is None, "B dropping it after the restart")


def test_without_the_channel_the_near_ttl_bounds_a_deleted_value(replicas):
    now = [0.0]
    a = replicas(listen=False)
    b = replicas(ttl=60.0, clock=lambda: now[0], listen=False)  # hears no deletes
    assert a.put("embedding:e", CacheEntry(make_embedding(), {}))
    assert b.get("embedding:e") is not None
    assert a.delete("embedding:e")
    now[0] = 59.0
    assert b.get("embedding:e") is not None  # stale, within the documented bound
    now[0] = 60.5
    assert b.get("embedding:e") is None  # past it, read from Redis again: gone


class StallingProxy(TcpProxy):
    """A ``TcpProxy`` that can also stall: connections stay open, nothing is forwarded."""

    def __init__(self, target_port: int) -> None:
        self.flowing = threading.Event()
        self.flowing.set()
        super().__init__(target_port)

    def stall(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def _pipe(self, source, sink) -> None:
        try:
            while (data := source.recv(1 << 16)) and self._linked:
                self.flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            source.close()
            sink.close()


@pytest.fixture
def stalling(redis_server) -> Iterator[StallingProxy]:
    proxy = StallingProxy(redis_server.port)
    yield proxy
    proxy.resume()
    proxy.close()


def test_a_stalled_redis_does_not_hold_writes_and_the_queue_is_bounded(
    replicas, redis_client, stalling
):
    entry = CacheEntry(make_embedding(), {})  # 512 bytes of features
    cache = replicas(stalling.url, socket_timeout=60, write_queue_bytes=3 * entry.nbytes)
    assert cache.put("embedding:0", entry)  # healthy: written before put returns
    assert redis_client.exists("repvit-sam:embedding:0") and cache.pending_writes == 0
    stalling.stall()
    for index in range(1, 6):  # 1 in progress, 3 queued, 1 dropped: put never waits 60 s
        assert cache.put(f"embedding:{index}", entry)
    assert cache.pending_writes == 4 and cache.stats().writes_dropped == 1
    assert cache.get("embedding:5") is not None  # the near cache answers meanwhile
    # A delete drops a queued write of its key first (then waits for Redis, synchronously).
    deleting = threading.Thread(target=cache.delete, args=("embedding:4",))
    deleting.start()
    wait_until(lambda: cache.pending_writes == 3, "the delete dropping the queued write")
    stalling.resume()
    deleting.join()
    wait_until(lambda: cache.pending_writes == 0, "the queued writes")
    written = [redis_client.exists(f"repvit-sam:embedding:{i}") for i in range(6)]
    assert written == [1, 1, 1, 1, 0, 0]
    assert cache.check() is True  # ... and the dropped write is shared at the next check
    assert redis_client.exists("repvit-sam:embedding:5")


def test_a_shared_cache_gets_a_near_ttl_by_default(redis_server):
    assert make_cache(Settings()).ttl_seconds is None  # one process: nothing to go stale
    for ttl, expected in ((None, 60.0), (5.0, 5.0), (600.0, 60.0)):
        cache = make_cache(Settings(cache_url=redis_server.url, cache_ttl_seconds=ttl))
        try:
            assert cache.near.ttl_seconds == expected
        finally:
            cache.close()


class AnnouncingFar(MemoryCache):
    """A backend whose every read races with another replica's delete of the key read."""

    def subscribe(self, callback: Callable[[str], None]) -> bool:
        self.callback = callback
        return True

    def get(self, key: str) -> CacheEntry | None:
        entry = super().get(key)
        self.callback(key)  # the delete arrives while the value is on its way
        return entry


def test_a_value_read_while_its_delete_arrives_is_not_kept_near():
    far = AnnouncingFar(MiB)
    cache = TieredCache(MemoryCache(MiB), far)
    try:
        far.put("embedding:e", CacheEntry(make_embedding(), {}))
        assert cache.get("embedding:e") is not None  # read before the delete: answered once
        assert cache.near.peek("embedding:e") is None and cache.stats().invalidations == 1
    finally:
        cache.close()


def test_the_writer_outlives_a_value_it_cannot_encode(replicas, redis_client):
    cache = replicas(listen=False)
    assert cache.put("logits:bad", CacheEntry(np.zeros(4, np.float32), {"x": object()}))
    assert cache.near.peek("logits:bad") is not None  # kept near; Redis refused it
    assert cache.put("logits:good", CacheEntry(np.ones(4, np.float32), {}))
    assert redis_client.exists("repvit-sam:logits:good")
    assert not redis_client.exists("repvit-sam:logits:bad")
