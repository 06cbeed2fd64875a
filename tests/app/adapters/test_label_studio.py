"""The Label Studio ML backend at /label-studio: its protocol's answers, masks equal to
/segment's (decoded by label-studio-converter's own brush decoder), one encoder call per image,
the image URL rules (no SSRF), the API key, and errors in the SDK server's shape."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from label_studio_converter.brush import decode_rle
from label_studio_helpers import (
    BRUSH_CONFIG,
    PERSONAL_TOKEN,
    POLYGON_CONFIG,
    TOKEN,
    FileServer,
    best_segment_mask,
    box,
    click,
    data_url,
    predict_body,
)
from service_helpers import encode, make_settings

from repvit_sam_server import create_app
from repvit_sam_server.encoding import encode_polygons

pytestmark = pytest.mark.anyio

W, H = 160, 120


def brush_mask(region: dict) -> np.ndarray:
    """The HxW bool mask of a brush region, decoded as Label Studio's converter does."""
    rgba = decode_rle(region["value"]["rle"]).reshape(
        region["original_height"], region["original_width"], 4
    )
    assert set(np.unique(rgba).tolist()) <= {0, 255}
    return rgba[:, :, 3] == 255


async def test_health_setup_and_webhook(client):
    for path in ("/label-studio/health", "/label-studio/"):
        assert (await client.get(path)).json() == {"status": "UP", "model_class": "RepViTSAM"}
    setup = await client.post(
        "/label-studio/setup", json={"project": "1.1700000000", "schema": BRUSH_CONFIG}
    )
    assert setup.status_code == 200
    assert setup.json()["model_version"].startswith("repvit-sam-m0_9-")
    hook = await client.post("/label-studio/webhook", json={"action": "START_TRAINING"})
    assert hook.status_code == 201 and hook.json()["status"] == "ok"
    other = await client.post("/label-studio/webhook", json={"action": "PROJECT_UPDATED"})
    assert other.status_code == 200 and other.json()["status"] == "Unknown event"


async def test_a_click_is_the_segment_mask_and_costs_one_decoder_call(app, client, png):
    body = predict_body(data_url(png), [click(37.5, 37.5, W, H)])
    metrics = app.state.metrics
    answer = await client.post("/label-studio/predict", json=body)
    assert answer.status_code == 200, answer.text
    (prediction,) = answer.json()["results"]
    (region,) = prediction["result"]
    assert region["type"] == "brushlabels" and region["image_rotation"] == 0
    assert (region["from_name"], region["to_name"]) == ("tag", "image")
    assert (region["original_width"], region["original_height"]) == (W, H)
    assert region["value"]["format"] == "rle" and region["value"]["brushlabels"] == ["Banana"]
    assert prediction["model_version"].startswith("repvit-sam-")
    assert prediction["score"] == pytest.approx(region["score"])

    # /segment, for the same click on the same image (the same cached embedding)
    files = {"image": ("a.png", png)}
    request = '{"points": [[60.0, 45.0]], "multimask": true}'
    segment = await client.post("/segment", files=files, data={"request": request})
    expected, score = best_segment_mask(segment.json())
    assert 0 < expected.sum() < W * H
    np.testing.assert_array_equal(brush_mask(region), expected)
    assert region["score"] == pytest.approx(score, abs=1e-6)

    # a second click of the task: the decoder runs, the encoder does not
    encoder, decoder = metrics.model_calls("encoder"), metrics.model_calls("decoder")
    body["params"]["context"]["result"].append(click(10.0, 90.0, W, H, positive=False))
    again = await client.post("/label-studio/predict", json=body)
    assert again.status_code == 200
    assert metrics.model_calls("encoder") == encoder
    assert metrics.model_calls("decoder") == decoder + 1
    text = (await client.get("/metrics")).text
    assert (
        'repvit_sam_requests_total{protocol="label-studio",method="POST",'
        'route="/label-studio/predict",status="200"}'
    ) in text


async def test_box_with_clicks_and_polygons(client, png):
    context = [box(20.0, 20.0, 40.0, 40.0, W, H), click(37.5, 37.5, W, H)]
    body = predict_body(data_url(png), context, POLYGON_CONFIG)
    answer = (await client.post("/label-studio/predict", json=body)).json()
    regions = answer["results"][0]["result"]
    assert regions and {r["type"] for r in regions} == {"polygonlabels"}
    files = {"image": ("a.png", png)}
    request = '{"points": [[60.0, 45.0]], "boxes": [[32.0, 24.0, 96.0, 72.0]]}'
    segment = await client.post("/segment", files=files, data={"request": request})
    mask, _ = best_segment_mask(segment.json())
    outlines = encode_polygons(mask, 1.0, holes=False)
    assert len(regions) == len(outlines)
    for region, outline in zip(regions, outlines, strict=True):
        assert region["value"]["polygonlabels"] == ["Banana"] and region["value"]["closed"]
        pixels = [[x * W / 100 - 0.5, y * H / 100 - 0.5] for x, y in region["value"]["points"]]
        np.testing.assert_allclose(np.ravel(pixels), outline, atol=1e-9)


async def test_no_context_is_no_prediction(client, png):
    body = predict_body(data_url(png), [])
    assert (await client.post("/label-studio/predict", json=body)).json() == {"results": []}
    body["params"] = {}
    assert (await client.post("/label-studio/predict", json=body)).json() == {"results": []}


@pytest.mark.parametrize(
    ("change", "status", "word"),
    [
        (lambda b: b.update(label_config="<View><Image name='image' value='$image'/>"), 422,
         "label_config"),
        (lambda b: b.update(label_config=BRUSH_CONFIG.replace("BrushLabels", "Choices")), 422,
         "BrushLabels"),
        (lambda b: b["params"]["context"]["result"][0].update(type="ellipselabels"), 422,
         "ellipselabels"),
        (lambda b: b["params"]["context"]["result"][0]["value"].update(x=140.0), 422,
         "result[0].value.x"),
        (lambda b: b["params"]["context"]["result"][0].update(original_width=999), 422,
         "original_width"),
        (lambda b: b["tasks"][0]["data"].pop("image"), 422, "tasks[0].data.image"),
        (lambda b: b["tasks"][0]["data"].update(image="data:image/png;base64,@@"), 422,
         "base64"),
        (lambda b: b["tasks"][0]["data"].update(image="/data/upload/1/a.png"), 422,
         "LABEL_STUDIO_URL"),
        (lambda b: b["tasks"][0]["data"].update(image="s3://bucket/a.png"), 422, "s3://"),
        (lambda b: b["tasks"][0]["data"].update(image="http://127.0.0.1:9/a.png"), 422,
         "not on the configured Label Studio"),
        (lambda b: b.pop("tasks"), 422, "tasks"),
        (lambda b: b["tasks"].append(b["tasks"][0]), 422, "one task"),
    ],
)  # fmt: skip
async def test_bad_requests_are_4xx_in_the_sdk_error_shape(client, png, change, status, word):
    body = predict_body(data_url(png), [click(37.5, 37.5, W, H)])
    change(body)
    answer = await client.post("/label-studio/predict", json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert set(error) == {"status", "detail", "request"} and error["status"] == status
    assert word in error["detail"]


async def test_non_json_and_oversized_images(client, checkpoint):
    answer = await client.post("/label-studio/predict", content=b"tasks=1")
    assert answer.status_code == 415 and answer.json()["status"] == 415
    bad = await client.post(
        "/label-studio/predict", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 422 and bad.json()["status"] == 422
    big = np.full((1000, 1200, 3), 90, np.uint8)  # 1.2 MP, over the tests' max_pixels of 1 MP
    body = predict_body(data_url(encode(big)), [click(50.0, 50.0, 1200, 1000)])
    answer = await client.post("/label-studio/predict", json=body)
    assert answer.status_code == 413 and "pixels" in answer.json()["detail"]


async def test_images_from_label_studio_only(checkpoint, png):
    files = {"/data/upload/1/a.png": png, "/data/upload/1/big.png": b"x" * 3_000_000}
    with FileServer(files).running() as studio, FileServer(files).running() as other:
        settings = make_settings(
            checkpoint, label_studio_url=studio.url + "/", label_studio_api_key=TOKEN
        )
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as http,
        ):
            await app.state.load_task

            async def predict(url: str) -> httpx.Response:
                body = predict_body(url, [click(37.5, 37.5, W, H)])
                return await http.post("/label-studio/predict", json=body)

            for url in ("/data/upload/1/a.png", studio.url + "/data/upload/1/a.png"):
                answer = await predict(url)
                assert answer.status_code == 200, answer.text
                region = answer.json()["results"][0]["result"][0]
                assert brush_mask(region).shape == (H, W)
            assert studio.hits == ["/data/upload/1/a.png"] * 2
            missing = await predict("/data/upload/1/gone.png")
            assert missing.status_code == 422 and "HTTP 404" in missing.json()["detail"]
            assert (await predict("/data/upload/1/big.png")).status_code == 413
            # another port of the same host, another host: refused before any request
            for url in (other.url + "/data/upload/1/a.png", "http://localhost:1/a.png"):
                refused = await predict(url)
                assert refused.status_code == 422, refused.text
                assert "REPVIT_SAM_LABEL_STUDIO_IMAGE_HOSTS" in refused.json()["detail"]
            assert other.hits == []


async def test_personal_access_tokens_are_exchanged_once(checkpoint, png):
    with FileServer({"/data/upload/1/a.png": png}).running() as studio:
        settings = make_settings(
            checkpoint, label_studio_url=studio.url, label_studio_api_key=PERSONAL_TOKEN
        )
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as http,
        ):
            await app.state.load_task
            body = predict_body("/data/upload/1/a.png", [click(37.5, 37.5, W, H)])
            for _ in range(2):
                answer = await http.post("/label-studio/predict", json=body)
                assert answer.status_code == 200, answer.text
        assert studio.hits == ["/api/token/refresh/"] + ["/data/upload/1/a.png"] * 2


async def test_api_key_as_basic_auth_or_header(checkpoint, png):
    app = create_app(make_settings(checkpoint, api_key="s3cret"))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        await app.state.load_task
        refused = await http.get("/label-studio/health")
        assert refused.status_code == 401 and refused.json()["status"] == 401
        wrong = await http.get("/label-studio/health", auth=("user", "nope"))
        assert wrong.status_code == 401
        basic = base64.b64encode(b"anyone:s3cret").decode()
        for headers in ({"Authorization": f"Basic {basic}"}, {"X-API-Key": "s3cret"}):
            assert (await http.get("/label-studio/health", headers=headers)).status_code == 200
        body = predict_body(data_url(png), [click(37.5, 37.5, W, H)])
        answer = await http.post("/label-studio/predict", json=body, auth=("labeller", "s3cret"))
        assert answer.status_code == 200 and answer.json()["results"][0]["result"]
