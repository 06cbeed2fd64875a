"""The project's image, built by a real Docker engine and run as the README documents.

The Dockerfile is built with its documented build arguments (``PYTHON_IMAGE``, a stand-in of
Debian's packages; ``TORCH_INDEX_URL`` empty, PyPI's torch, where PyTorch's CPU index cannot be
reached) and run with a random-weight checkpoint mounted read-only at ``/weights``. The tests run
in order against one container (module fixture); the last one stops it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from service_helpers import encode, make_image

from tests.docker_helpers import docker
from tests.process_helpers import TEST_IMAGE_SIZE, TEST_VARIANT, free_port

pytestmark = pytest.mark.docker

# compose's stop_grace_period; the image's REPVIT_SAM_SHUTDOWN_TIMEOUT_SECONDS is 30.
GRACE_SECONDS = 40
BOXES = [[10, 10, 90, 80], [60, 30, 150, 110]]


@dataclass
class Container:
    name: str
    base: str

    def inspect(self, template: str) -> str:
        return docker("inspect", "--format", template, self.name).stdout.strip()

    def logs(self) -> str:
        done = docker("logs", self.name, check=False)
        return done.stdout + done.stderr


def service_environment() -> list[str]:
    """``-e`` options for the small random-weight model in the mounted checkpoint."""
    env = {
        "REPVIT_SAM_CHECKPOINT": "/weights/repvit_sam.pt",
        "REPVIT_SAM_VARIANT": TEST_VARIANT,
        "REPVIT_SAM_IMAGE_SIZE": str(TEST_IMAGE_SIZE),
        "REPVIT_SAM_BACKEND": "torch",
    }
    return [option for key, value in env.items() for option in ("-e", f"{key}={value}")]


@pytest.fixture(scope="module")
def container(service_image: str, mounted_weights: Path) -> Iterator[Container]:
    name = f"repvit-sam-test-{uuid.uuid4().hex[:8]}"
    docker("network", "create", name)
    port = free_port()
    try:
        docker(
            *("run", "-d", "--name", name, "--network", name, "-p", f"127.0.0.1:{port}:8000"),
            *("-v", f"{mounted_weights}:/weights:ro", *service_environment(), service_image),
        )
        yield Container(name, f"http://127.0.0.1:{port}")
    finally:
        docker("rm", "-f", name, check=False)
        docker("network", "rm", name, check=False)


def wait_ready(container: Container, timeout: float = 180) -> float:
    """Seconds from now until ``/readyz`` answers 200."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        assert container.inspect("{{.State.Running}}") == "true", container.logs()
        try:
            if httpx.get(f"{container.base}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"/readyz not 200 within {timeout:g} s:\n{container.logs()}")


def embed(base: str, seed: int = 1) -> str:
    files = {"image": ("a.png", encode(make_image(seed=seed)))}
    response = httpx.post(f"{base}/embed", files=files, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["embedding_id"]


def test_the_container_is_alive_then_ready_and_embeds_and_segments(container):
    seconds = wait_ready(container)
    print(f"container ready {seconds:.1f} s after docker run returned")
    health = httpx.get(f"{container.base}/healthz", timeout=5)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    embedding_id = embed(container.base)
    body = {"embedding_id": embedding_id, "boxes": BOXES, "multimask": True}
    segment = httpx.post(f"{container.base}/segment", json=body, timeout=60)
    assert segment.status_code == 200, segment.text
    masks = segment.json()["masks"]
    assert len(masks) == 2 * 3 and all(mask["area"] >= 0 for mask in masks)
    # The mounted checkpoint, not a download: the volume is read-only.
    assert "Downloading" not in container.logs()


def test_the_image_healthcheck_reports_healthy(container):
    # The image's HEALTHCHECK runs deploy/healthcheck.py every 15 s.
    deadline = time.monotonic() + 60
    while (status := container.inspect("{{.State.Health.Status}}")) != "healthy":
        assert status == "starting" and time.monotonic() < deadline, container.inspect(
            "{{json .State.Health}}"
        )
        time.sleep(1)
    log = json.loads(container.inspect("{{json .State.Health.Log}}"))
    assert log[-1]["ExitCode"] == 0


def test_the_service_runs_unprivileged_under_tini(container):
    ids = docker("exec", container.name, "id", "-u").stdout.split()
    assert ids == ["10001"]
    pid1 = docker("exec", container.name, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert Path(pid1[0]).name == "tini" and "repvit-sam" in pid1
    # The weights volume is mounted read-only and the service cannot write to it.
    write = docker("exec", container.name, "touch", "/weights/x", check=False)
    assert write.returncode != 0


def test_docker_stop_exits_0_after_finishing_the_request_in_flight(container):
    embedding_id = embed(container.base, seed=2)
    answer: dict[str, object] = {}

    def masks() -> None:
        body = {"embedding_id": embedding_id, "points_per_side": 32}
        try:
            answer["response"] = httpx.post(f"{container.base}/masks", json=body, timeout=120)
        except httpx.HTTPError as error:  # pragma: no cover - reported by the assertion
            answer["error"] = error
        answer["done"] = time.monotonic()

    worker = threading.Thread(target=masks)
    worker.start()
    time.sleep(1.0)
    signalled = time.monotonic()
    stop = docker("stop", "--time", str(GRACE_SECONDS), container.name, timeout=GRACE_SECONDS + 30)
    stopped = time.monotonic() - signalled
    worker.join(timeout=60)
    response = answer.get("response")
    assert isinstance(response, httpx.Response), answer
    assert response.status_code == 200, response.text
    # In flight when SIGTERM came, and finished after it.
    assert answer["done"] > signalled, "the request ended before docker stop: make it longer"
    assert stop.returncode == 0 and stopped < GRACE_SECONDS, f"stop took {stopped:.1f} s"
    assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()
