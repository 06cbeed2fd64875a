"""POST /masks and POST /edges: equality with MaskGenerator and EdgeDetector, limits, errors."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from PIL import Image
from pycocotools import mask as mask_utils
from service_helpers import TEST_IMAGE_SIZE, TEST_VARIANT, make_image, make_settings

from repvit_sam import EdgeDetector, ImageEmbedding, MaskGenerator, Predictor, build_repvit_sam
from repvit_sam_server import create_app
from tests.comparisons import (
    amg_record_logits,
    assert_8bit_maps_agree,
    assert_amg_records_agree,
)
from tests.process_helpers import save_sharp_test_checkpoint

pytestmark = pytest.mark.anyio

API_KEY = "k3y"
# Random weights predict low IoU and soft logits: the filters are lowered (as in
# tests/test_amg.py) so that several masks survive every stage.
LOW_FILTERS = {"pred_iou_thresh": 0.02, "stability_score_thresh": 0.03, "box_nms_thresh": 0.99}
MASK_PARAMS = {"points_per_side": 4, **LOW_FILTERS}
EDGE_PARAMS = {"points_per_side": 3, "nms_thresh": 0.99}


@pytest.fixture(scope="module")
def sharp_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The conftest's small random model with sharper mask logits, so stability scores vary."""
    return save_sharp_test_checkpoint(tmp_path_factory.mktemp("sharp") / "sharp.pt")


@pytest.fixture(scope="module")
async def everything_app(sharp_checkpoint: Path) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        sharp_checkpoint,
        api_key=API_KEY,
        warmup=False,
        max_points_per_side=8,
        max_edge_points_per_side=6,
        max_points_per_batch=64,
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        await application.state.load_task
        yield application


@pytest.fixture
async def http(everything_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=everything_app)
    headers = {"X-API-Key": API_KEY}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        yield c


@pytest.fixture(scope="module")
def model(sharp_checkpoint: Path):
    """The same checkpoint built independently of the app. The service encodes with the
    channels-last torch backend, this contiguously: the same function, other roundings."""
    return build_repvit_sam(
        sharp_checkpoint, variant=TEST_VARIANT, image_size=TEST_IMAGE_SIZE, fuse=True
    )


@pytest.fixture(scope="module")
def local_embedding(model) -> ImageEmbedding:
    return Predictor(model).embed(make_image())


@pytest.fixture
async def image_id(http: httpx.AsyncClient, png: bytes) -> str:
    response = await http.post("/embed", files={"image": ("a.png", png)})
    assert response.status_code == 200, response.text
    return response.json()["embedding_id"]


async def test_masks_equal_mask_generator(http, image, png, image_id, model, local_embedding):
    response = await http.post("/masks", json={"embedding_id": image_id, **MASK_PARAMS})
    assert response.status_code == 200, response.text
    answer = response.json()
    expected = MaskGenerator(model, output_mode="coco_rle", **MASK_PARAMS).generate(
        image, embedding=local_embedding
    )
    assert len(expected) >= 3, "the parity case must have several masks"
    assert (answer["embedding_id"], answer["width"], answer["height"]) == (image_id, 160, 120)
    # The two encoders' embeddings differ by ~1e-5, the IoU predictions by ~1e-7.
    predictor = Predictor(model)
    logits = [amg_record_logits(predictor, local_embedding, record) for record in expected]
    assert_amg_records_agree(answer["masks"], expected, logits, iou_atol=1e-5)
    for record in answer["masks"]:
        rle = {"size": record["segmentation"]["size"], "counts": record["segmentation"]["counts"]}
        mask = mask_utils.decode({**rle, "counts": rle["counts"].encode()}).astype(bool)
        assert mask.shape == (120, 160) and int(mask.sum()) == record["area"]

    # One-shot: the image in a multipart form gives the same records and the same id (the
    # service's cached embedding through the same code: equal bit for bit).
    form = {"request": json.dumps(MASK_PARAMS)}
    uploaded = await http.post("/masks", files={"image": ("a.png", png)}, data=form)
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json() == answer

    metrics = (await http.get("/metrics")).text
    assert 'repvit_sam_requests_total{method="POST",route="/masks",status="200"} 2' in metrics
    assert 'repvit_sam_model_seconds_count{stage="masks"} 2' in metrics


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("points_per_side", 0),
        ("points_per_side", 9),  # above max_points_per_side
        ("points_per_batch", 65),  # above max_points_per_batch
        ("pred_iou_thresh", 1.5),
        ("stability_score_thresh", -0.1),
        ("box_nms_thresh", "high"),
        ("crop_n_layers", 3),
        ("crop_overlap_ratio", 1.0),
        ("min_mask_region_area", -1),
        ("output_mode", "binary_mask"),
        ("point_grids", [[[0.5, 0.5]]]),
    ],
)
async def test_bad_mask_parameters_are_422_naming_the_field(http, image_id, field, value):
    # Within this service's max_points_per_side (8): the default grid (32) is refused too.
    body = {"embedding_id": image_id, "points_per_side": 4, field: value}
    response = await http.post("/masks", json=body)
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [["body", field]]
    if value == 9:
        assert "REPVIT_SAM_MAX_POINTS_PER_SIDE" in response.text


async def test_crop_layers_without_points_are_422_naming_the_factor(http, png):
    request = {"points_per_side": 1, "crop_n_layers": 1, "crop_n_points_downscale_factor": 2}
    form = {"request": json.dumps(request)}
    response = await http.post("/masks", files={"image": ("a.png", png)}, data=form)
    assert response.status_code == 422, response.text
    locs = [e["loc"] for e in response.json()["detail"]]
    assert locs == [["body", "request", "crop_n_points_downscale_factor"]]


async def test_crops_need_the_image_and_ids_must_exist(http, image_id, png):
    body = {"embedding_id": image_id, "points_per_side": 4, "crop_n_layers": 1}
    crops = await http.post("/masks", json=body)
    assert crops.status_code == 422 and "crop_n_layers" in crops.json()["detail"]
    for path in ("/masks", "/edges"):
        unknown = await http.post(path, json={"embedding_id": "f" * 32, "points_per_side": 4})
        assert unknown.status_code == 404 and "unknown" in unknown.json()["detail"]
        missing = await http.post(path, json={"points_per_side": 4})
        assert missing.status_code == 422
        assert missing.json()["detail"][0]["loc"] == ["body", "embedding_id"]
        bad_form = await http.post(
            path,
            files={"image": ("a.png", png)},
            data={"request": '{"points_per_side": 4, "nms_thresh": 1, "x": 1}'},
        )
        assert bad_form.status_code == 422
        assert ["body", "request", "x"] in [e["loc"] for e in bad_form.json()["detail"]]


async def test_edges_equal_edge_detector(http, image, image_id, model, local_embedding, png):
    expected = EdgeDetector(model, **EDGE_PARAMS).detect(image, embedding=local_embedding)
    assert expected.edges.max() == 1.0 and (expected.edges > 0).sum() > 100

    raw = await http.post("/edges", json={"embedding_id": image_id, **EDGE_PARAMS, "format": "npy"})
    assert raw.status_code == 200, raw.text
    edges = np.load(io.BytesIO(raw.content), allow_pickle=False)
    assert edges.shape == (120, 160) and edges.dtype == np.float32
    assert edges.min() >= 0 and edges.max() <= 1
    np.testing.assert_allclose(edges, expected.edges, atol=1e-5)
    assert raw.headers["X-Num-Masks"] == str(expected.num_masks) == "27"
    assert raw.headers["X-Num-Kept"] == str(expected.num_kept)

    # The default format: an 8-bit PNG, here from the uploaded image. Its float map is the npy
    # one above, within 1e-5 of the library's: one grey level apart at most, at x.5 boundaries.
    files = {"image": ("a.png", png)}
    picture = await http.post("/edges", files=files, data={"request": json.dumps(EDGE_PARAMS)})
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    assert picture.headers["X-Embedding-Id"] == image_id
    with Image.open(io.BytesIO(picture.content)) as decoded:
        assert decoded.mode == "L" and decoded.size == (160, 120)
        pixels = np.asarray(decoded)
    assert_8bit_maps_agree(pixels, expected.to_uint8(), expected.edges, atol=1e-5)

    body = {"embedding_id": image_id, **EDGE_PARAMS, "format": "json"}
    answer = (await http.post("/edges", json=body)).json()
    assert (answer["width"], answer["height"], answer["num_kept"]) == (160, 120, expected.num_kept)
    decoded_npy = np.load(io.BytesIO(base64.b64decode(answer["edges"])), allow_pickle=False)
    np.testing.assert_array_equal(decoded_npy, edges)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("points_per_side", 7),  # above max_edge_points_per_side
        ("points_per_batch", 0),
        ("nms_thresh", 2),
        ("boundary_width", 0),
        ("format", "jpeg"),
    ],
)
async def test_bad_edge_parameters_are_422_naming_the_field(http, image_id, field, value):
    body = {"embedding_id": image_id, "points_per_side": 4, field: value}  # grid within limit
    response = await http.post("/edges", json=body)
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [["body", field]]


async def test_api_key_is_required(everything_app, image_id):
    transport = httpx.ASGITransport(app=everything_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as anonymous:
        for path in ("/masks", "/edges"):
            response = await anonymous.post(path, json={"embedding_id": image_id})
            assert response.status_code == 401
            wrong = await anonymous.post(
                path, json={"embedding_id": image_id}, headers={"X-API-Key": "nope"}
            )
            assert wrong.status_code == 401


async def test_deadline_exceeded_is_504(everything_app, http, image_id, monkeypatch):
    monkeypatch.setattr(everything_app.state.settings, "max_task_seconds", 1e-6)
    for path in ("/masks", "/edges"):
        response = await http.post(path, json={"embedding_id": image_id, "points_per_side": 2})
        assert response.status_code == 504, response.text
        assert "max_task_seconds" in response.json()["detail"]


async def test_a_task_stuck_in_the_queue_is_answered_504_not_left_hanging(
    everything_app, http, image_id, monkeypatch
):
    service = everything_app.state.service
    monkeypatch.setattr(everything_app.state.settings, "max_task_seconds", 0.2)
    ran = service.metrics.model_calls("masks")
    release = threading.Event()
    blocker = asyncio.ensure_future(service.run(release.wait, 10))
    await asyncio.sleep(0.05)
    try:
        body = {"embedding_id": image_id, "points_per_side": 2}
        response = await asyncio.wait_for(http.post("/masks", json=body), timeout=5)
        assert response.status_code == 504
        assert "max_task_seconds=0.2" in response.json()["detail"]
    finally:
        release.set()
        await blocker
    await asyncio.sleep(0.05)
    assert service.queue_depth == 0
    assert service.metrics.model_calls("masks") == ran  # the queued task never started


async def test_openapi_documents_masks_and_edges(http):
    spec = (await http.get("/openapi.json")).json()
    for path in ("/masks", "/edges"):
        operation = spec["paths"][path]["post"]
        content = operation["requestBody"]["content"]
        schemas = spec["components"]["schemas"]
        name = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert schemas[name]["examples"]
        form = content["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert "image" in schemas[form]["properties"]
        assert {"401", "404", "422", "503", "504"} <= set(operation["responses"])
    assert schemas["MasksResponse"]["examples"] and schemas["EdgesResponse"]["examples"]
    assert "image/png" in spec["paths"]["/edges"]["post"]["responses"]["200"]["content"]
