"""The X-AnyLabeling remote-server routes: bodies as X-AnyLabeling's ``RemoteServer`` client
sends them (``anylabeling/services/auto_labeling/remote_server.py``), answers checked field by
field against X-AnyLabeling-Server's schemas, and masks against the native /segment."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from service_helpers import make_settings

from repvit_sam_client import decode_rle
from repvit_sam_server import create_app

pytestmark = pytest.mark.anyio

SHAPE_FIELDS = {
    "label", "shape_type", "points", "score", "attributes", "description", "difficult",
    "direction", "flags", "group_id", "kie_linking",
}  # fmt: skip


def client_body(png: bytes, marks: list[dict], **params: object) -> dict:
    """``RemoteServer.predict_shapes``'s payload for an image without a file on disk."""
    image = "data:image/png;base64," + base64.b64encode(png).decode()
    values = {"conf_threshold": 0.0, "iou_threshold": 0.0, "epsilon_factor": 0.001, **params}
    return {"model": "repvit_sam", "image": image, "params": {**values, "marks": marks}}


async def native_masks(client: httpx.AsyncClient, png: bytes, **prompts: object) -> dict:
    embedded = await client.post("/embed", files={"image": ("a.png", png)})
    body = {"embedding_id": embedded.json()["embedding_id"], **prompts}
    response = await client.post("/segment", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def filled(points: list[list[float]], height: int, width: int) -> np.ndarray:
    raster = np.zeros((height, width), np.uint8)
    cv2.fillPoly(raster, [np.asarray(points, np.int32)], 1)
    return raster.astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


async def test_health_models_and_info(client: httpx.AsyncClient) -> None:
    health = (await client.get("/x-anylabeling/health")).json()
    assert health["status"] == "healthy" and health["models_loaded"] == 1
    assert health["timestamp"].endswith("Z")
    listed = (await client.get("/x-anylabeling/v1/models")).json()
    assert listed["success"] is True and list(listed["data"]) == ["repvit_sam"]
    model = listed["data"]["repvit_sam"]
    assert set(model) == {
        "display_name",
        "widgets",
        "params",
        "capabilities",
        "batch_processing_mode",
    }
    widgets = {w["name"]: w["value"] for w in model["widgets"]}
    assert {"button_add_point", "button_add_rect", "button_clear"} <= set(widgets)
    assert widgets["mask_fineness_slider"] == 10
    assert model["params"]["epsilon_factor"] == 0.001
    assert model["params"]["multimask_output"] is False
    info = (await client.get("/x-anylabeling/v1/models/repvit_sam/info")).json()
    assert info["success"] is True and info["data"]["model_id"] == "repvit_sam"
    assert info["data"]["widgets"] == model["widgets"]
    missing = await client.get("/x-anylabeling/v1/models/yolo11n/info")
    assert missing.status_code == 404
    assert missing.json()["success"] is False
    assert missing.json()["error"]["code"] == "MODEL_NOT_FOUND"


async def test_point_gives_the_native_mask_as_a_closed_polygon(
    client: httpx.AsyncClient, png: bytes
) -> None:
    marks = [{"type": "point", "data": [60, 40], "label": 1}]
    response = await client.post("/x-anylabeling/v1/predict", json=client_body(png, marks))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["success"] is True
    assert answer["data"]["description"] == "" and answer["data"]["replace"] is False
    shapes = answer["data"]["shapes"]
    native = await native_masks(client, png, points=[[60, 40]], labels=[1])
    mask = decode_rle(native["masks"][0]["segmentation"])
    if not mask.any():
        assert shapes == []
        return
    assert shapes, "a non-empty mask gives at least one polygon"
    union = np.zeros_like(mask)
    for shape in shapes:
        assert set(shape) == SHAPE_FIELDS
        assert shape["label"] == "AUTOLABEL_OBJECT" and shape["shape_type"] == "polygon"
        assert shape["points"][0] == shape["points"][-1] and len(shape["points"]) >= 4
        assert shape["score"] == pytest.approx(
            min(max(native["masks"][0]["score"], 0), 1), abs=1e-5
        )
        # approxPolyDP keeps vertices of the traced outline: pixels of the mask.
        for x, y in shape["points"]:
            assert mask[int(y), int(x)]
        union |= filled(shape["points"], *mask.shape)
    assert iou(union, mask) > 0.8


async def test_epsilon_factor_simplifies(client: httpx.AsyncClient, png: bytes) -> None:
    marks = [{"type": "rectangle", "data": [30, 20, 90, 70]}]
    counts = []
    for epsilon in (0.0, 0.001, 0.05):
        body = client_body(png, marks, epsilon_factor=epsilon)
        shapes = (await client.post("/x-anylabeling/v1/predict", json=body)).json()["data"][
            "shapes"
        ]
        counts.append(sum(len(s["points"]) for s in shapes))
    assert counts[0] >= counts[1] >= counts[2]
    assert counts[0] > counts[2]


async def test_rectangles_are_prompts_in_one_call(client: httpx.AsyncClient, png: bytes) -> None:
    marks = [
        {"type": "rectangle", "data": [90, 70, 30, 20]},  # dragged up-left: the same box
        {"type": "rectangle", "data": [100, 10, 150, 60]},
        {"type": "point", "data": [60, 40], "label": 1},
    ]
    body = client_body(png, marks, show_boxes=True, show_masks=False)
    shapes = (await client.post("/x-anylabeling/v1/predict", json=body)).json()["data"]["shapes"]
    native = await native_masks(
        client, png, boxes=[[30, 20, 90, 70], [100, 10, 150, 60]], points=[[60, 40]], labels=[1]
    )
    expected = [m for m in native["masks"] if m["area"] > 0]
    assert [s["shape_type"] for s in shapes] == ["rectangle"] * len(shapes)
    assert len(shapes) <= len(expected) and len(shapes) >= 1
    scores = sorted(min(max(m["score"], 0), 1) for m in expected)
    for shape in shapes:
        (x0, y0), (x1, _), (_, y2), (x3, _) = shape["points"]
        assert x0 == x3 and x1 > x0 and y2 > y0
        assert any(abs(shape["score"] - s) < 1e-5 for s in scores)


async def test_multimask_keeps_the_best_candidate(client: httpx.AsyncClient, png: bytes) -> None:
    marks = [{"type": "point", "data": [60, 40], "label": 1}]
    body = client_body(png, marks, multimask_output=True)
    shapes = (await client.post("/x-anylabeling/v1/predict", json=body)).json()["data"]["shapes"]
    native = await native_masks(client, png, points=[[60, 40]], labels=[1], multimask=True)
    best = max(native["masks"], key=lambda m: m["score"])
    if best["area"]:
        assert shapes[0]["score"] == pytest.approx(min(max(best["score"], 0), 1), abs=1e-5)


async def test_clicks_on_one_image_encode_it_once(
    app: FastAPI, client: httpx.AsyncClient, png: bytes
) -> None:
    first = client_body(png, [{"type": "point", "data": [10, 10], "label": 1}])
    assert (await client.post("/x-anylabeling/v1/predict", json=first)).status_code == 200
    encodes = app.state.metrics.model_calls("encoder")
    decodes = app.state.metrics.model_calls("decoder")
    for x in (20, 30, 40):
        body = client_body(png, [{"type": "point", "data": [x, 10], "label": 0}])
        assert (await client.post("/x-anylabeling/v1/predict", json=body)).status_code == 200
    assert app.state.metrics.model_calls("encoder") == encodes
    assert app.state.metrics.model_calls("decoder") == decodes + 3
    metrics = (await client.get("/metrics")).text
    assert 'route="/x-anylabeling/v1/predict",status="200"' in metrics


async def test_no_marks_is_an_empty_answer(client: httpx.AsyncClient, png: bytes) -> None:
    body = client_body(png, [])
    answer = (await client.post("/x-anylabeling/v1/predict", json=body)).json()
    assert answer == {"success": True, "data": {"shapes": [], "description": "", "replace": False}}


@pytest.mark.parametrize(
    ("change", "status", "code", "names"),
    [
        ({"model": "segment_anything_2"}, 404, "MODEL_NOT_FOUND", "segment_anything_2"),
        ({"image": "not base64!"}, 422, "INVALID_IMAGE", "image"),
        ({"image": base64.b64encode(b"GIF89a...").decode()}, 422, "INVALID_IMAGE", "image"),
        ({"params": {"marks": [{"type": "auto_grid"}]}}, 422, "INVALID_REQUEST", "marks.0"),
        ({"params": {"marks": [{"type": "point", "data": [1]}]}}, 422, "INVALID_REQUEST", "marks"),
        (
            {"params": {"marks": [{"type": "point", "data": [500, 1]}]}},
            422,
            "INVALID_REQUEST",
            "marks[0]",
        ),
        (
            {"params": {"marks": [{"type": "rectangle", "data": [5, 5, 5, 9]}]}},
            422,
            "INVALID_REQUEST",
            "area",
        ),
        ({"params": {"epsilon_factor": -1}}, 422, "INVALID_REQUEST", "epsilon_factor"),
        ({"params": {"multimask_output": "yes"}}, 422, "INVALID_REQUEST", "multimask_output"),
        ({"model": None}, 422, "INVALID_REQUEST", "model"),
    ],
)
async def test_bad_requests_get_the_protocol_error(
    client: httpx.AsyncClient, png: bytes, change: dict, status: int, code: str, names: str
) -> None:
    body = {**client_body(png, [{"type": "point", "data": [10, 10], "label": 1}]), **change}
    response = await client.post("/x-anylabeling/v1/predict", json=body)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["success"] is False and answer["error"]["code"] == code
    assert names in answer["error"]["message"]


async def test_a_body_over_max_upload_bytes_is_413(client: httpx.AsyncClient, png: bytes) -> None:
    body = client_body(png, [])
    body["image"] += "A" * 2_000_000  # the test service's max_upload_bytes
    response = await client.post("/x-anylabeling/v1/predict", json=body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_not_json_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/x-anylabeling/v1/predict", content=b"x", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_the_api_key_is_read_from_the_token_header(checkpoint: Path, png: bytes) -> None:
    app = create_app(make_settings(checkpoint, api_key="s3cret", warmup=False))
    body = client_body(png, [{"type": "point", "data": [10, 10], "label": 1}])
    async with app.router.lifespan_context(app):
        await app.state.load_task
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            assert (await http.get("/x-anylabeling/health")).status_code == 200
            for headers in ({}, {"Token": ""}, {"Token": "wrong"}):
                refused = await http.post("/x-anylabeling/v1/predict", json=body, headers=headers)
                assert refused.status_code == 401
                assert refused.json()["error"]["code"] == "UNAUTHORIZED"
            listed = await http.get("/x-anylabeling/v1/models")
            assert listed.status_code == 401
            for headers in ({"Token": "s3cret"}, {"X-API-Key": "s3cret"}):
                ok = await http.post("/x-anylabeling/v1/predict", json=body, headers=headers)
                assert ok.status_code == 200 and ok.json()["success"] is True
