"""The shared cache: its value format, ``RedisCache`` against a real redis-server, the near
cache in front of it, and an app that keeps answering while Redis is down."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import numpy as np
import pytest
import redis
import torch
from service_helpers import encode, make_image, make_settings

from repvit_sam import ImageEmbedding
from repvit_sam_server import create_app
from repvit_sam_server.cache import CacheEntry, MemoryCache, TieredCache
from repvit_sam_server.cache_codec import MAGIC, CorruptEntryError, decode_entry, encode_entry
from repvit_sam_server.redis_cache import RedisCache
from repvit_sam_server.store import EmbeddingStore
from tests.process_helpers import TcpProxy

MiB = 1 << 20


def make_embedding(seed: int = 0) -> ImageEmbedding:
    generator = torch.Generator().manual_seed(seed)
    return ImageEmbedding(torch.randn(1, 8, 4, 4, generator=generator), (30, 40), (12, 16))


def assert_same_embedding(got: ImageEmbedding, expected: ImageEmbedding) -> None:
    assert torch.equal(got.features, expected.features)
    assert got.original_size == expected.original_size and got.input_size == expected.input_size


def test_codec_round_trips_embeddings_and_logits():
    embedding = make_embedding()
    back = decode_entry(encode_entry(CacheEntry(embedding, {"width": 40, "fingerprint": "f"})))
    assert_same_embedding(back.value, embedding)
    assert back.meta == {"width": 40, "fingerprint": "f"}
    logits = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    back = decode_entry(encode_entry(CacheEntry(logits, {"best": [0, 2]})))
    np.testing.assert_array_equal(back.value, logits)
    assert back.value.dtype == np.float32 and back.value.flags.writeable
    assert back.meta == {"best": [0, 2]}


def test_codec_rejects_anything_else_without_unpickling():
    data = encode_entry(CacheEntry(np.ones((2, 3), np.float32), {}))
    header_end = len(MAGIC) + 4 + int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "big")
    header = json.loads(data[len(MAGIC) + 4 : header_end])
    object_header = json.dumps({**header, "dtype": "|O"}).encode()
    bad_values = [
        b"",
        b"\x80\x04\x95pickle",
        data[:-4],  # truncated payload
        data + b"\0",  # trailing bytes
        MAGIC + (1 << 30).to_bytes(4, "big") + b"{}",  # header longer than the value
        MAGIC + len(object_header).to_bytes(4, "big") + object_header + data[header_end:],
    ]
    for bad in bad_values:
        with pytest.raises(CorruptEntryError):
            decode_entry(bad)


@pytest.fixture
def redis_client(redis_server) -> redis.Redis:
    connection = redis.Redis.from_url(redis_server.url)
    yield connection
    connection.close()


def test_redis_cache_round_trip_ttl_bounds_and_bad_values(redis_server, redis_client):
    cache = RedisCache(redis_server.url, namespace="t", ttl_seconds=100, max_entry_bytes=10_000)
    embedding = make_embedding()
    assert cache.put("embedding:a", CacheEntry(embedding, {"fingerprint": "f"}))
    got = cache.get("embedding:a")
    assert_same_embedding(got.value, embedding)
    assert got.meta == {"fingerprint": "f"}
    assert 0 < redis_client.ttl("t:embedding:a") <= 100
    assert not cache.put("big", CacheEntry(np.zeros(5000, np.float32)))  # 20 kB > 10 kB
    assert cache.get("big") is None and not redis_client.exists("t:big")
    redis_client.set("t:junk", b"written by something else")
    assert cache.get("junk") is None and not redis_client.exists("t:junk")
    assert cache.delete("embedding:a") and not cache.delete("embedding:a")
    assert cache.get("embedding:a") is None
    assert cache.check() is True
    backend = cache.stats().backend
    assert backend.up and backend.hits == 1 and backend.misses == 3 and backend.errors == 0
    assert cache.stats().corrupt == 1  # the junk: a bad value, not a failed call
    assert backend.max_bytes == 64 * MiB and backend.used_bytes > 0


def test_concurrent_writers_of_one_key_never_expose_a_partial_value(redis_server):
    replicas = [RedisCache(redis_server.url) for _ in range(3)]
    value = np.random.default_rng(0).normal(size=(64, 1024)).astype(np.float32)  # 256 kB
    seen: list[np.ndarray | None] = []

    def write(cache: RedisCache) -> None:
        for _ in range(20):
            assert cache.put("logits:same", CacheEntry(value, {"best": [0]}))

    def read(cache: RedisCache) -> None:
        for _ in range(40):
            entry = cache.get("logits:same")
            seen.append(None if entry is None else entry.value)

    threads = [threading.Thread(target=write, args=(cache,)) for cache in replicas]
    threads.append(threading.Thread(target=read, args=(replicas[0],)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    read_back = [array for array in seen if array is not None]
    assert read_back and all(np.array_equal(array, value) for array in read_back)


def test_redis_down_is_a_miss_with_backoff_then_reconnects(redis_server):
    now = [0.0]
    cache = RedisCache(redis_server.url, socket_timeout=0.5, clock=lambda: now[0])
    entry = CacheEntry(np.ones(4, np.float32), {})
    assert cache.put("logits:x", entry)
    redis_server.stop()
    assert cache.get("logits:x") is None and not cache.up
    assert not cache.put("logits:y", entry) and not cache.delete("logits:x")
    assert cache.stats().backend.errors == 1  # backing off: no further attempts yet
    redis_server.start()  # empty: the server keeps nothing across restarts
    assert cache.check() is False  # still within the backoff
    now[0] += 1.0
    assert cache.check() is True and cache.up
    assert cache.put("logits:y", entry) and cache.get("logits:y") is not None


def test_near_cache_answers_while_redis_is_down_and_fills_from_redis(redis_server):
    def replica() -> TieredCache:
        far = RedisCache(redis_server.url, socket_timeout=0.5, retry_max_seconds=0.1)
        return TieredCache(MemoryCache(MiB), far, listen=False)  # deletes: test_cache_consistency

    first, second = replica(), replica()
    embedding = make_embedding()
    assert first.put("embedding:e", CacheEntry(embedding, {"fingerprint": "f"}))
    assert_same_embedding(second.get("embedding:e").value, embedding)  # from Redis
    assert second.stats().entries == 1  # ... now in its near cache too
    redis_server.stop()
    assert_same_embedding(first.get("embedding:e").value, embedding)
    assert_same_embedding(second.get("embedding:e").value, embedding)
    assert first.put("embedding:f", CacheEntry(make_embedding(1), {}))  # kept near only
    assert second.get("embedding:f") is None
    assert first.stats().backend.up is False and first.check() is False
    redis_server.start()
    time.sleep(0.15)  # past the backoff
    assert first.check() is True  # ... and what was kept near only is shared now
    assert_same_embedding(second.get("embedding:f").value, make_embedding(1))


def test_deletes_and_writes_made_while_redis_is_unreachable_reach_it_afterwards(redis_server):
    link = TcpProxy(redis_server.port)

    def replica(url: str) -> TieredCache:
        far = RedisCache(url, socket_timeout=0.5, retry_max_seconds=0.1)
        return TieredCache(MemoryCache(MiB), far, listen=False)  # deletes: test_cache_consistency

    first = replica(link.url)
    try:
        for key in ("embedding:e", "embedding:f"):
            assert first.put(key, CacheEntry(make_embedding(), {}))
        link.cut()  # Redis is unreachable, but keeps its data
        assert first.delete("embedding:e") and first.delete("embedding:f")
        assert first.put("embedding:f", CacheEntry(make_embedding(2), {}))  # written again
        assert first.get("embedding:e") is None and first.stats().backend.up is False
        later = replica(redis_server.url)
        assert later.get("embedding:e") is not None  # Redis still has the deleted value
        link.restore()
        time.sleep(0.15)  # past the backoff
        assert first.check() is True
    finally:
        link.close()
    later = replica(redis_server.url)  # a replica that reads Redis afresh
    assert later.get("embedding:e") is None  # the delete reached Redis...
    assert_same_embedding(later.get("embedding:f").value, make_embedding(2))  # ...then the write


def test_store_ignores_values_written_by_another_model():
    cache = MemoryCache(MiB)
    mine, theirs = EmbeddingStore(cache), EmbeddingStore(cache)
    mine.fingerprint, theirs.fingerprint = "model-a", "model-b"
    theirs.put_embedding("e", make_embedding())
    theirs.put_logits("l", np.zeros((1, 3, 8, 8), np.float32), {"best": [0]})
    assert mine.get_embedding("e") is None and mine.get_logits("l") is None
    assert theirs.get_embedding("e") is not None


@pytest.mark.anyio
async def test_app_stays_up_and_reports_a_degraded_cache(checkpoint, redis_server):
    settings = make_settings(
        checkpoint,
        cache_url=redis_server.url,
        cache_check_seconds=0.1,
        cache_retry_max_seconds=0.2,
        cache_socket_timeout_seconds=0.5,
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        await app.state.load_task
        assert (await http.get("/readyz")).json() == {"status": "ok", "cache": "ok"}
        redis_server.stop()
        embedded = await http.post("/embed", files={"image": ("a.png", encode(make_image()))})
        assert embedded.status_code == 200
        body = {"embedding_id": embedded.json()["embedding_id"], "boxes": [[10, 10, 90, 80]]}
        assert (await http.post("/segment", json=body)).status_code == 200
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["cache"] == "degraded"
        text = (await http.get("/metrics")).text
        assert "\nrepvit_sam_cache_backend_up 0\n" in text
        errors = int(text.split("\nrepvit_sam_cache_backend_errors_total ")[1].split()[0])
        assert errors >= 1
        redis_server.start()
        for _ in range(100):  # the background check reconnects
            if (await http.get("/readyz")).json()["cache"] == "ok":
                break
            await asyncio.sleep(0.05)
        assert (await http.get("/readyz")).json()["cache"] == "ok"
        assert "\nrepvit_sam_cache_backend_up 1\n" in (await http.get("/metrics")).text
