"""The persistent embedding store behind the caches (REPVIT_SAM_STORE_URL): what
``repvit-sam embed-dataset`` stored costs the service no encoder call, on any replica."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from service_helpers import encode, make_image, make_settings

from repvit_sam.cli import main
from repvit_sam_server import create_app
from tests.process_helpers import TEST_IMAGE_SIZE, TEST_VARIANT

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def stored(tmp_path_factory, checkpoint) -> tuple[Path, Path]:
    """A store holding the embeddings of two images, as embed-dataset writes it."""
    images, store = tmp_path_factory.mktemp("photos"), tmp_path_factory.mktemp("store")
    for seed in (1, 2):
        (images / f"photo{seed}.png").write_bytes(encode(make_image(seed=seed)))
    command = [
        "embed-dataset", str(images), "--store", str(store), "--checkpoint", str(checkpoint),
        "--variant", TEST_VARIANT, "--image-size", str(TEST_IMAGE_SIZE), "--backend", "torch",
    ]  # fmt: skip
    assert main(command) == 0
    return images, store


async def _client(settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await app.state.load_task
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            http.app = app  # type: ignore[attr-defined]
            yield http


@pytest.fixture
async def replica(checkpoint, stored) -> AsyncIterator[httpx.AsyncClient]:
    async for http in _client(make_settings(checkpoint, store_url=str(stored[1]))):
        yield http


def _encoder_calls(http: httpx.AsyncClient) -> int:
    return http.app.state.metrics.model_calls("encoder")


async def test_a_stored_image_is_embedded_without_the_encoder(replica, stored):
    images, _ = stored
    answer = await replica.post(
        "/embed", files={"image": ("a.png", (images / "photo1.png").read_bytes())}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["cached"] is True
    assert _encoder_calls(replica) == 0
    click = {"embedding_id": answer.json()["embedding_id"], "points": [[40, 30]]}
    assert (await replica.post("/segment", json=click)).status_code == 200
    assert _encoder_calls(replica) == 0
    metrics = (await replica.get("/metrics")).text
    assert 'repvit_sam_store_lookups_total{outcome="hit"} 1' in metrics


async def test_a_stored_id_serves_segment_without_any_embed(replica, stored):
    from repvit_sam.dataset import EmbeddingStore

    manifest = EmbeddingStore(str(stored[1]), "").manifest()
    click = {"embedding_id": manifest["photo2.png"], "boxes": [[10, 10, 90, 70]]}
    answer = await replica.post("/segment", json=click)
    assert answer.status_code == 200, answer.text
    assert answer.json()["width"] == 160 and _encoder_calls(replica) == 0


async def test_an_image_the_store_lacks_is_encoded_once(replica):
    png = encode(make_image(seed=7))
    first = await replica.post("/embed", files={"image": ("b.png", png)})
    again = await replica.post("/embed", files={"image": ("b.png", png)})
    assert (first.json()["cached"], again.json()["cached"]) == (False, True)
    assert _encoder_calls(replica) == 1
    assert (
        'repvit_sam_store_lookups_total{outcome="miss"} 1' in (await replica.get("/metrics")).text
    )


async def test_another_models_store_is_not_used(tmp_path, stored):
    """A store filled by another checkpoint: its values are ignored, the encoder runs."""
    import torch

    from repvit_sam import build_repvit_sam

    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    torch.save(
        build_repvit_sam(variant=TEST_VARIANT, image_size=TEST_IMAGE_SIZE).state_dict(), other
    )
    images, store = stored
    async for http in _client(make_settings(other, store_url=str(store))):
        answer = await http.post(
            "/embed", files={"image": ("a.png", (images / "photo1.png").read_bytes())}
        )
        assert answer.json()["cached"] is False and _encoder_calls(http) == 1
