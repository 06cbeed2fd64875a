"""Fixtures: a small random-weight checkpoint, one running app per session, images."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi import FastAPI
from service_helpers import TEST_IMAGE_SIZE, TEST_VARIANT, encode, make_image, make_settings

from repvit_sam import build_repvit_sam
from repvit_sam_server import create_app
from tests.process_helpers import REDIS_SERVER, RedisServer


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight m0_9 checkpoint at 256 input (fast on CPU)."""
    torch.manual_seed(0)
    model = build_repvit_sam(variant=TEST_VARIANT, image_size=TEST_IMAGE_SIZE)
    path = tmp_path_factory.mktemp("weights") / "repvit_sam_m0_9_random.pt"
    torch.save(model.state_dict(), path)
    return path


async def started(app: FastAPI) -> None:
    await app.state.load_task


@pytest.fixture(scope="session")
async def app(checkpoint: Path) -> AsyncIterator[FastAPI]:
    application = create_app(make_settings(checkpoint))
    async with application.router.lifespan_context(application):
        await started(application)
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
def image() -> np.ndarray:
    return make_image()


@pytest.fixture
def png(image: np.ndarray) -> bytes:
    return encode(image)


@pytest.fixture
async def embedding_id(client: httpx.AsyncClient, png: bytes) -> str:
    response = await client.post("/embed", files={"image": ("a.png", png)})
    assert response.status_code == 200, response.text
    return response.json()["embedding_id"]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running ``redis-server`` on a free loopback port (skips where none is installed)."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server not installed (apt-get install -y redis-server; .ci/run does)")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A Docker engine for the ``docker`` tests: the running one, or ``dockerd`` started (and
    stopped after the session) here; skips, saying why, where none can run."""
    from tests.docker_helpers import engine_or_skip

    engine = engine_or_skip(tmp_path_factory.mktemp("dockerd"))
    try:
        yield
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def service_image(docker_engine: None) -> str:
    """The project's image, built from the Dockerfile on a stand-in ``python:3.11-slim``."""
    from tests.docker_helpers import PYTHON, build_service_image

    return build_service_image(PYTHON.ensure())


@pytest.fixture(scope="session")
def mounted_weights(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``repvit_sam.pt`` (the random-weight checkpoint) that the image's user
    10001 can read, for a read-only ``/weights`` mount."""
    folder = tmp_path_factory.mktemp("mounted-weights")
    shutil.copyfile(checkpoint, folder / "repvit_sam.pt")
    folder.chmod(0o755)
    (folder / "repvit_sam.pt").chmod(0o644)
    return folder
