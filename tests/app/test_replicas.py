"""Two ``repvit-sam serve`` replicas sharing a real redis-server: what a scaled-out deployment
relies on. The tests run in order against one cluster (module fixture)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_helpers import encode, make_image

from tests.process_helpers import RedisServer, ServeProcess, needs_redis

pytestmark = needs_redis

BOXES = [[10, 10, 90, 80], [60, 30, 150, 110]]


@dataclass
class Cluster:
    redis: RedisServer
    a: ServeProcess
    b: ServeProcess


@pytest.fixture(scope="module")
def cluster(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("cluster")
    redis = RedisServer(folder)
    redis.start()
    env = {
        "REPVIT_SAM_CACHE_URL": redis.url,
        "REPVIT_SAM_CACHE_CHECK_SECONDS": "0.2",
        "REPVIT_SAM_CACHE_RETRY_MAX_SECONDS": "0.5",
        "REPVIT_SAM_CACHE_SOCKET_TIMEOUT_SECONDS": "0.5",
    }
    a = ServeProcess(checkpoint, folder / "a.log", **env)
    b = ServeProcess(checkpoint, folder / "b.log", **env)
    try:
        a.start()
        b.start()
        a.wait_ready()
        b.wait_ready()
        yield Cluster(redis, a, b)
    finally:
        a.stop()
        b.stop()
        redis.stop()


def post(replica: ServeProcess, path: str, **kwargs: Any) -> httpx.Response:
    response = httpx.post(f"{replica.base}{path}", timeout=60, **kwargs)
    assert response.status_code < 500, f"{path}: {response.status_code} {response.text}"
    return response


def embed(replica: ServeProcess, seed: int) -> dict[str, Any]:
    image = make_image(seed=seed)
    response = post(replica, "/embed", files={"image": ("a.png", encode(image))})
    assert response.status_code == 200, response.text
    return response.json()


def segment(replica: ServeProcess, body: dict[str, Any]) -> httpx.Response:
    return post(replica, "/segment", json={"boxes": BOXES, "multimask": True, **body})


def masks(response: httpx.Response) -> list[tuple[int, int, str]]:
    """What must agree between replicas: prompt, area and the RLE of every mask.

    Bit for bit, unlike two code paths (tests.comparisons): the replicas run the same code on
    the same machine, one thread each (OMP_NUM_THREADS=1), on the same embedding bytes. It
    must stay so: the random test model's masks of two different images agree on > 99.9% of
    their pixels and their scores by about 1e-6, so the rules for two computations could not
    tell a wrong answer from a right one.
    """
    assert response.status_code == 200, response.text
    return [(m["prompt"], m["area"], m["segmentation"]["counts"]) for m in response.json()["masks"]]


def cache_state(replica: ServeProcess) -> str:
    ready = httpx.get(f"{replica.base}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    return ready.json()["cache"]


def wait_for_cache(replicas: list[ServeProcess], state: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not all(cache_state(replica) == state for replica in replicas):
        assert time.monotonic() < deadline, f"cache never became {state!r}"
        time.sleep(0.1)


def test_an_embedding_made_on_one_replica_serves_the_other(cluster):
    embedded = embed(cluster.a, seed=1)
    assert embedded["cached"] is False
    body = {"embedding_id": embedded["embedding_id"]}
    on_b, on_a = segment(cluster.b, body), segment(cluster.a, body)
    assert masks(on_b) == masks(on_a) and len(masks(on_a)) == 6
    scores = [m["score"] for m in on_a.json()["masks"]]
    assert [m["score"] for m in on_b.json()["masks"]] == pytest.approx(scores, abs=1e-6)
    # Logits made on A refine on B; the same image embedded on B is found in Redis.
    refine = {**body, "mask_input_id": on_a.json()["logits_id"]}
    assert masks(segment(cluster.b, refine)) == masks(segment(cluster.a, refine))
    again = embed(cluster.b, seed=1)
    assert again["cached"] is True and again["embedding_id"] == embedded["embedding_id"]


def test_redis_outage_gives_no_5xx_and_no_wrong_answer(cluster):
    first = {"embedding_id": embed(cluster.a, seed=2)["embedding_id"]}
    expected = masks(segment(cluster.b, first))  # B now holds it in its near cache too
    cluster.redis.stop()
    second = {"embedding_id": embed(cluster.a, seed=3)["embedding_id"]}
    on_a = masks(segment(cluster.a, second))
    for _ in range(3):
        assert masks(segment(cluster.a, first)) == expected
        assert masks(segment(cluster.b, first)) == expected
        assert masks(segment(cluster.a, second)) == on_a
        # B never saw the second image: an honest 404 ("embed again"), never a wrong mask.
        assert segment(cluster.b, second).status_code == 404
    wait_for_cache([cluster.a, cluster.b], "degraded")
    text = httpx.get(f"{cluster.b.base}/metrics", timeout=5).text
    assert "\nrepvit_sam_cache_backend_up 0\n" in text

    cluster.redis.start()  # empty, as a restarted cache without persistence is
    wait_for_cache([cluster.a, cluster.b], "ok")
    # A wrote the second embedding during the outage; it shares it once Redis is back.
    assert masks(segment(cluster.b, second)) == on_a
    third = {"embedding_id": embed(cluster.b, seed=4)["embedding_id"]}
    assert masks(segment(cluster.a, third)) == masks(segment(cluster.b, third))


def test_sigterm_finishes_requests_in_flight_and_a_restart_keeps_embeddings(cluster):
    body = {"embedding_id": embed(cluster.a, seed=5)["embedding_id"]}
    expected = masks(segment(cluster.a, body))
    # Seconds of work on the test model; thresholds off so that the answer is not empty.
    work = {**body, "points_per_side": 16, "pred_iou_thresh": 0, "stability_score_thresh": 0}
    complete = post(cluster.a, "/masks", json=work).json()["masks"]
    assert complete
    answers: list[httpx.Response] = []
    slow = threading.Thread(target=lambda: answers.append(post(cluster.b, "/masks", json=work)))
    slow.start()
    deadline = time.monotonic() + 20
    while "\nrepvit_sam_queue_depth 1\n" not in httpx.get(f"{cluster.b.base}/metrics").text:
        assert time.monotonic() < deadline, "the /masks request never reached the model"
        time.sleep(0.02)
    cluster.b.sigterm()
    slow.join(timeout=60)
    assert answers and answers[0].status_code == 200, answers
    assert answers[0].json()["masks"] == complete, "the request in flight was cut short"
    # A clean stop: uvicorn exits 0, or re-raises the SIGTERM it handled (-15; 143 in a shell).
    assert cluster.b.wait(timeout=30) in (0, -15), cluster.b.output()
    assert "Application shutdown complete" in cluster.b.output()

    cluster.b.start()
    cluster.b.wait_ready()
    assert masks(segment(cluster.b, body)) == expected  # from Redis: B's memory was empty
