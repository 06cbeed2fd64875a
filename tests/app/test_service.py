"""Operations: health, metrics, API key, CORS, back-pressure, robustness, the cache, the docs."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import numpy as np
import pytest
import torch
from pydantic import ValidationError
from service_helpers import encode, make_image, make_settings

from repvit_sam import CheckpointError
from repvit_sam_server import create_app
from repvit_sam_server.cache import CacheEntry, MemoryCache

pytestmark = pytest.mark.anyio


async def test_health_ready_and_metrics(client, embedding_id):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ok", "cache": "local"}
    await client.post("/segment", json={"embedding_id": embedding_id, "points": [[1, 1]]})
    await client.post("/segment", json={"embedding_id": embedding_id})
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'repvit_sam_requests_total{method="POST",route="/segment",status="200"}' in text
    assert 'repvit_sam_requests_total{method="POST",route="/segment",status="422"}' in text
    assert 'repvit_sam_request_seconds_bucket{method="POST",route="/segment",status="200"' in text
    for name in ("cache_hits_total", "cache_misses_total", "cache_evictions_total", "queue_depth"):
        assert f"\nrepvit_sam_{name} " in text
    assert 'repvit_sam_model_seconds_count{stage="decoder"}' in text
    assert "\nrepvit_sam_cache_bytes " in text


async def test_api_key_cors_and_readiness(checkpoint):
    settings = make_settings(
        checkpoint, api_key="s3cret", cors_origins="http://annotator.example", warmup=False
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        loading = await http.get("/readyz")
        assert loading.status_code == 503 and "loading" in loading.json()["detail"]
        await app.state.load_task
        assert (await http.get("/readyz")).status_code == 200
        files = {"image": ("a.png", encode(make_image()))}
        response = await http.post("/embed", files=files)
        assert response.status_code == 401 and "X-API-Key" in response.json()["detail"]
        wrong = await http.post("/embed", files=files, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401
        right = await http.post("/embed", files=files, headers={"X-API-Key": "s3cret"})
        assert right.status_code == 200
        assert (await http.get("/healthz")).status_code == 200
        preflight = await http.options(
            "/segment",
            headers={
                "Origin": "http://annotator.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "X-API-Key",
            },
        )
        assert preflight.headers["access-control-allow-origin"] == "http://annotator.example"


async def test_full_queue_answers_503_with_retry_after(app, client, embedding_id, monkeypatch):
    service = app.state.service
    monkeypatch.setattr(service.scheduler, "max_jobs", 1)
    release = threading.Event()
    blocker = asyncio.ensure_future(service.run(release.wait, 10))
    await asyncio.sleep(0.05)
    try:
        body = {"embedding_id": embedding_id, "points": [[1, 1]]}
        response = await asyncio.wait_for(client.post("/segment", json=body), timeout=5)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert "queue" in response.json()["detail"]
    finally:
        release.set()
        await blocker
    assert service.queue_depth == 0


async def test_200_concurrent_mixed_requests_leave_the_server_healthy(client, embedding_id):
    good = {"embedding_id": embedding_id, "points": [[30, 30]], "labels": [1]}
    bad_bodies = [
        {"embedding_id": embedding_id, "points": [[1, 1]], "labels": [1, 0]},
        {"embedding_id": embedding_id, "boxes": [[10, 10, 5, 5]]},
        {"embedding_id": "f" * 32, "points": [[1, 1]]},
        {"embedding_id": embedding_id, "points": [[1e6, 1]]},
        {"embedding_id": embedding_id},
    ]

    def request(i: int):
        if i % 8 == 0:
            return client.post("/segment", json=good)
        if i % 4 in (0, 1):
            return client.post("/segment", json=bad_bodies[i % len(bad_bodies)])
        if i % 4 == 2:
            return client.post("/embed", files={"image": ("x.png", b"\x89PNG garbage")})
        return client.post(
            "/segment", content='{"points": [[NaN', headers={"Content-Type": "application/json"}
        )

    responses = await asyncio.wait_for(
        asyncio.gather(*(request(i) for i in range(200))), timeout=60
    )
    statuses = [r.status_code for r in responses]
    assert all(s < 500 for s in statuses), sorted(set(statuses))
    assert statuses.count(200) == 25
    assert set(statuses) <= {200, 404, 422}
    assert (await client.get("/readyz")).status_code == 200
    after = await client.post("/segment", json=good)
    assert after.status_code == 200


def test_memory_cache_is_bounded_by_bytes_with_lru_and_ttl():
    now = [0.0]
    cache = MemoryCache(max_bytes=3000, ttl_seconds=10, clock=lambda: now[0])
    item = CacheEntry(np.zeros(250, np.float32))  # 1000 bytes
    for key in "abc":
        assert cache.put(key, item)
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("d", item)
    assert cache.get("b") is None and cache.get("a") is not None
    assert cache.stats().evictions == 1 and cache.stats().bytes == 3000
    assert not cache.put("huge", CacheEntry(np.zeros(1000, np.float32)))
    now[0] = 11.0
    assert cache.get("a") is None
    assert cache.delete("c") and not cache.delete("c")
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (2, 2)


def test_memory_cache_holds_embeddings():
    from repvit_sam import ImageEmbedding

    embedding = ImageEmbedding(torch.zeros(1, 256, 4, 4), (30, 40), (48, 64))
    cache = MemoryCache(max_bytes=embedding.nbytes)
    assert cache.put("e", CacheEntry(embedding, {"width": 40}))
    assert cache.get("e").value is embedding


async def test_openapi_has_examples_for_every_endpoint(client):
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in ("/embed", "/segment", "/embeddings/{embedding_id}", "/logits/{logits_id}"):
        assert path in paths
    schemas = spec["components"]["schemas"]
    for name in ("SegmentResponse", "EmbedResponse", "LogitsResponse", "Health"):
        assert schemas[name].get("examples"), name
    body = paths["/segment"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/SegmentRequest"}
    assert schemas["SegmentRequest"]["examples"][0]["points"]
    assert body["multipart/form-data"]["schema"] == {"$ref": "#/components/schemas/SegmentForm"}
    assert "image" in schemas["SegmentForm"]["properties"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            text = json.dumps(operation)
            assert "example" in text or "$ref" in text, (method, path)
    assert (await client.get("/docs")).status_code == 200


def test_a_device_this_machine_lacks_is_a_settings_error(checkpoint):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValidationError, match="device") as caught:
        make_settings(checkpoint, device="cuda:1")
    assert "CUDA is not available" in str(caught.value)


async def test_a_model_that_failed_to_load_fails_health_and_every_request(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    app = create_app(make_settings(broken, warmup=False))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        with pytest.raises(CheckpointError):
            await app.state.load_task
        for route in ("/healthz", "/readyz"):
            answer = await http.get(route)
            assert answer.status_code == 503, route
            assert "failed to load" in answer.json()["detail"] and "broken.pt" in answer.text
        embed = await http.post("/embed", files={"image": ("a.png", encode(make_image()))})
        assert embed.status_code == 503 and "failed to load" in embed.json()["detail"]


async def test_a_non_ascii_api_key_matches_when_sent_as_utf8(checkpoint):
    app = create_app(make_settings(checkpoint, api_key="sëcret", warmup=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        path = "/embeddings/" + "f" * 32  # past the key check: 404, not 401
        right = await http.get(path, headers={"X-API-Key": "sëcret".encode()})
        assert right.status_code == 404, right.text
        wrong = await http.get(path, headers={"X-API-Key": "secret"})
        assert wrong.status_code == 401
