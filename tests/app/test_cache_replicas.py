"""Two apps sharing one real redis-server, as two replicas do: a DELETE on one reaches the
other's near cache, a malformed value in Redis is a 404 that the next /embed repairs (never a
500), and a stalled Redis does not hold a /segment until its write times out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from service_helpers import encode, make_image, make_settings
from test_cache_consistency import StallingProxy

from repvit_sam_server import create_app
from repvit_sam_server.cache import CacheEntry
from repvit_sam_server.cache_codec import MAGIC, encode_entry

BOX = {"boxes": [[10, 10, 90, 80]]}


@contextlib.asynccontextmanager
async def replica(
    checkpoint: Path, url: str, **settings: object
) -> AsyncIterator[httpx.AsyncClient]:
    options = {
        "cache_check_seconds": 0.1,
        "cache_retry_max_seconds": 0.2,
        "cache_socket_timeout_seconds": 0.5,
        **settings,
    }
    app = create_app(make_settings(checkpoint, cache_url=url, **options))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        await app.state.load_task
        http.service = app.state.service  # type: ignore[attr-defined]
        yield http


async def until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout:g} s"
        await asyncio.sleep(0.01)


async def metric(http: httpx.AsyncClient, name: str) -> float:
    text = (await http.get("/metrics")).text
    return float(text.split(f"\n{name} ")[1].split()[0])


async def embed(http: httpx.AsyncClient, seed: int) -> dict:
    response = await http.post("/embed", files={"image": ("a.png", encode(make_image(seed=seed)))})
    assert response.status_code == 200, response.text
    return response.json()


def meta_as_list(data: bytes) -> bytes:
    """The value with its ``meta`` replaced by a list: the header of issue 15's 500."""
    end = len(MAGIC) + 4 + int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "big")
    header = json.loads(data[len(MAGIC) + 4 : end])
    text = json.dumps({**header, "meta": list(header["meta"])}).encode()
    return MAGIC + len(text).to_bytes(4, "big") + text + data[end:]


@pytest.mark.anyio
async def test_deletes_reach_the_other_replica_and_bad_values_are_misses(checkpoint, redis_server):
    shared = redis.Redis.from_url(redis_server.url)
    async with (
        replica(checkpoint, redis_server.url) as a,
        replica(checkpoint, redis_server.url) as b,
    ):
        for http in (a, b):
            await until(lambda h=http: h.service.cache.stats().backend.listening, "subscribing")
        # A DELETE on A drops the id from B's near cache too.
        first = (await embed(a, seed=1))["embedding_id"]
        assert (await b.post("/segment", json={"embedding_id": first, **BOX})).status_code == 200
        assert (await a.delete(f"/embeddings/{first}")).status_code == 204
        await until(lambda: b.service.cache.near.peek(f"embedding:{first}") is None, "B's drop")
        assert (await b.post("/segment", json={"embedding_id": first, **BOX})).status_code == 404
        assert await metric(b, "repvit_sam_cache_invalidations_total") == 1

        # A malformed embedding in Redis: 404 on B (not 500), dropped, counted, recomputed.
        second = (await embed(a, seed=2))["embedding_id"]
        key = f"repvit-sam:embedding:{second}"
        shared.set(key, meta_as_list(shared.get(key)))
        body = {"embedding_id": second, **BOX}
        for _ in range(2):
            assert (await b.post("/segment", json=body)).status_code == 404
        assert not shared.exists(key) and await metric(b, "repvit_sam_cache_corrupt_total") == 1
        again = await embed(b, seed=2)
        assert again == {**again, "embedding_id": second, "cached": False}
        answer = await b.post("/segment", json=body)
        assert answer.status_code == 200 and await metric(b, "repvit_sam_cache_backend_up") == 1

        # Logits of this model without their candidate indices: a 404 to refine with, not 500.
        logits_key = f"repvit-sam:logits:{answer.json()['logits_id']}"
        fingerprint = b.service.fingerprint
        bad = CacheEntry(np.zeros((1, 3, 64, 64), np.float32), {"fingerprint": fingerprint})
        shared.set(logits_key, encode_entry(bad))
        refine = {**body, "mask_input_id": answer.json()["logits_id"]}
        assert (await a.post("/segment", json=refine)).status_code == 404
        assert not shared.exists(logits_key)
    shared.close()


@pytest.mark.anyio
async def test_a_stalled_redis_does_not_hold_a_click(checkpoint, redis_server):
    proxy = StallingProxy(redis_server.port)
    shared = redis.Redis.from_url(redis_server.url)
    try:
        # A stalled Redis answers nothing for 60 s: a click that waited for its write would
        # take that long and fail; this one answers while the write is still pending.
        async with replica(checkpoint, proxy.url, cache_socket_timeout_seconds=60) as http:
            embedding_id = (await embed(http, seed=3))["embedding_id"]
            assert shared.exists(f"repvit-sam:embedding:{embedding_id}")
            proxy.stall()
            answer = await http.post("/segment", json={"embedding_id": embedding_id, **BOX})
            assert answer.status_code == 200
            assert http.service.cache.pending_writes == 1  # the logits, not yet in Redis
            proxy.resume()
            await until(lambda: http.service.cache.pending_writes == 0, "the write")
            assert shared.exists(f"repvit-sam:logits:{answer.json()['logits_id']}")
    finally:
        proxy.resume()
        proxy.close()
        shared.close()
