"""The service with the int8 encoder (REPVIT_SAM_PRECISION=int8): calibrated on the folder of
REPVIT_SAM_CALIBRATION_IMAGES, its embeddings are the int8 encoder's and under another model
fingerprint than fp32's, and clicks on them answer as with fp32."""

from __future__ import annotations

import copy
import io

import httpx
import numpy as np
import pytest
from PIL import Image
from service_helpers import encode, make_image, make_settings

from repvit_sam import runtimes
from repvit_sam.backends import make_encoder
from repvit_sam.quantize import SAMPLE_PHOTOS, encoder_input, sample_photos
from repvit_sam_server import create_app

pytest.importorskip("skimage")
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        bool(runtimes.missing_modules("int8")), reason="nncf/openvino not installed ([int8] extra)"
    ),
]


@pytest.fixture(scope="module")
def calibration_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibration")
    for index, photo in enumerate(sample_photos(SAMPLE_PHOTOS[:2])):
        Image.fromarray(photo).save(folder / f"photo{index}.png")
    return folder


@pytest.fixture
async def int8_app(checkpoint, calibration_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("REPVIT_SAM_HOME", str(tmp_path / "home"))  # its own encoder cache
    settings = make_settings(
        checkpoint, backend="auto", precision="int8", calibration_images=calibration_folder
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        await application.state.load_task
        yield application


async def test_the_int8_service_embeds_with_the_calibrated_encoder_and_segments(
    int8_app, app, calibration_folder, tmp_path
):
    service = int8_app.state.service
    assert service.predictor.encoder.name.startswith("openvino-int8-")
    assert service.fingerprint != app.state.service.fingerprint  # no id shared with fp32's
    image = make_image()
    transport = httpx.ASGITransport(app=int8_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/readyz")).status_code == 200
        embedded = await http.post("/embed", files={"image": ("a.png", encode(image))})
        assert embedded.status_code == 200, embedded.text
        embedding_id = embedded.json()["embedding_id"]
        stored = await http.get(f"/embeddings/{embedding_id}")
        clicked = await http.post(
            "/segment",
            json={
                "embedding_id": embedding_id,
                "points": [[60, 45]],
                "labels": [1],
                "multimask": True,
            },
        )
    assert clicked.status_code == 200, clicked.text
    assert len(clicked.json()["masks"]) == 3

    # The same int8 encoder built outside the service (same model, same calibration folder)
    # gives the embedding the service stored: the service runs what the library documents.
    expected_encoder = make_encoder(
        copy.deepcopy(service.predictor.model),
        "openvino",
        precision="int8",
        calibration_images=calibration_folder,
        cache_dir=tmp_path / "library-cache",
    )
    expected = expected_encoder(encoder_input(service.predictor.model, image)).numpy()
    assert stored.status_code == 200, stored.text
    actual = np.load(io.BytesIO(stored.content))
    np.testing.assert_allclose(actual.reshape(expected.shape), expected, rtol=1e-4, atol=1e-4)
