"""The bad-input corpus (``bad_inputs.py``) against the app in process: each case gets its
status and a JSON answer that names what was wrong; none gets a 5xx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from bad_inputs import CORPUS, EID, HEIGHT, LIMITS, WIDTH, Case
from service_helpers import encode, make_image, make_settings

from repvit_sam_server import create_app


@pytest.fixture(scope="module")
async def limited(checkpoint) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client of the app under ``LIMITS``, and the id of an embedded WIDTH x HEIGHT image."""
    app = create_app(make_settings(checkpoint, **LIMITS))
    async with app.router.lifespan_context(app):
        await app.state.load_task
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            png = encode(make_image(WIDTH, HEIGHT))
            embedded = await http.post("/embed", files={"image": ("a.png", png)})
            assert embedded.status_code == 200, embedded.text
            yield http, embedded.json()["embedding_id"]


def _with_id(value, embedding_id: str):
    if isinstance(value, bytes):
        return value.replace(f'"{EID}"'.encode(), f'"{embedding_id}"'.encode())
    if isinstance(value, str):
        return value.replace(f'"{EID}"', f'"{embedding_id}"')
    return value


def test_the_corpus_is_large_and_its_names_unique():
    assert len(CORPUS) >= 100
    assert len({case.id for case in CORPUS}) == len(CORPUS)


@pytest.mark.anyio
@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
async def test_bad_input_gets_its_4xx_naming_the_problem(limited, case: Case):
    http, embedding_id = limited
    request = case.build()
    for key in ("content", "data"):
        if key == "content" and key in request:
            request[key] = _with_id(request[key], embedding_id)
        elif key in request:
            request[key] = {k: _with_id(v, embedding_id) for k, v in request[key].items()}
    path = case.path.replace(EID, embedding_id)
    response = await http.request(case.method, path, **request)
    assert response.status_code == case.status, response.text[:500]
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    text = json.dumps(answer["detail"] if response.status_code >= 400 else answer)
    assert case.names in text, text[:500]
