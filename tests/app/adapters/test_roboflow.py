"""The Roboflow-compatible SAM routes: the bodies of Roboflow inference's ``SamEmbeddingRequest``
and ``SamSegmentationRequest`` (``inference/core/entities/requests/sam.py``), answers of its
``SamEmbeddingResponse`` / ``SamSegmentationResponse`` shape, masks against the native /segment.
(inference-sdk has no method for these routes: its SAM method calls /sam2/.)"""

from __future__ import annotations

import base64
import http.server
import io
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from service_helpers import encode, make_image, make_settings

from repvit_sam_client import decode_rle
from repvit_sam_server import create_app

pytestmark = pytest.mark.anyio


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def npy(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array)
    return stream.getvalue()


async def native(client: httpx.AsyncClient, png: bytes, **prompts: object) -> tuple[dict, str]:
    embedded = await client.post("/embed", files={"image": ("a.png", png)})
    embedding_id = embedded.json()["embedding_id"]
    response = await client.post("/segment", json={"embedding_id": embedding_id, **prompts})
    assert response.status_code == 200, response.text
    return response.json()["masks"][0], embedding_id


async def test_embed_then_segment_by_image_id(client: httpx.AsyncClient, png: bytes) -> None:
    body = {"image": {"type": "base64", "value": b64(png)}, "image_id": "cat-1", "api_key": "x"}
    embedded = await client.post("/roboflow/sam/embed_image", json=body)
    assert embedded.status_code == 200, embedded.text
    answer = embedded.json()
    assert set(answer) == {"embeddings", "time"} and answer["time"] >= 0
    features = np.asarray(answer["embeddings"], np.float32)
    reference = np.load(
        io.BytesIO((await client.get(f"/embeddings/{await _id(client, png)}")).content)
    )
    np.testing.assert_allclose(features, reference, rtol=0, atol=1e-6)

    segment = {"image_id": "cat-1", "point_coords": [[60, 40]], "point_labels": [1]}
    response = await client.post("/roboflow/sam/segment_image", json=segment)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"masks", "low_res_masks", "time"}
    assert len(answer["masks"]) == 1 and len(answer["low_res_masks"]) == 1
    expected, _ = await native(client, png, points=[[60, 40]], labels=[1])
    mask = decode_rle(expected["segmentation"])
    polygon = answer["masks"][0]
    assert polygon, "the mask is not empty"
    for x, y in polygon:
        assert mask[y, x], "outline vertices are pixels of the native mask"
    assert all(0 <= v < 256 for point in answer["low_res_masks"][0] for v in point)


async def _id(client: httpx.AsyncClient, png: bytes) -> str:
    return (await client.post("/embed", files={"image": ("a.png", png)})).json()["embedding_id"]


async def test_binary_formats(client: httpx.AsyncClient, png: bytes, image: np.ndarray) -> None:
    body = {"image": {"type": "base64", "value": b64(png)}, "format": "binary"}
    embedded = await client.post("/roboflow/sam/embed_image", json=body)
    assert embedded.headers["content-type"] == "application/octet-stream"
    features = np.load(io.BytesIO(embedded.content), allow_pickle=False)
    assert features.dtype == np.float32 and features.shape[:2] == (1, 256)

    segment = {**body, "point_coords": [[60, 40], [0, 0]], "point_labels": [1, -1]}
    response = await client.post("/roboflow/sam/segment_image", json=segment)
    arrays = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert set(arrays.files) == {"masks", "low_res_masks"}
    masks, low_res = arrays["masks"], arrays["low_res_masks"]
    assert masks.dtype == bool and masks.shape == (1, *image.shape[:2])
    assert low_res.dtype == np.float32 and low_res.shape == (1, 64, 64)  # 256 input: 64x64
    expected, _ = await native(client, png, points=[[60, 40]], labels=[1])
    np.testing.assert_array_equal(masks[0], decode_rle(expected["segmentation"]))

    # The client's own embeddings, as nested lists and as base64 .npy, decode the same mask.
    size = list(image.shape[:2])
    for sent, fmt in ((features.tolist(), "json"), (b64(npy(features)), "binary")):
        request = {
            "embeddings": sent, "embeddings_format": fmt, "orig_im_size": size,
            "point_coords": [[60, 40]], "point_labels": [1], "format": "binary",
        }  # fmt: skip
        again = await client.post("/roboflow/sam/segment_image", json=request)
        assert again.status_code == 200, again.text
        np.testing.assert_array_equal(np.load(io.BytesIO(again.content))["masks"], masks)


async def test_mask_input_from_the_cache_and_sent(client: httpx.AsyncClient, png: bytes) -> None:
    image = {"type": "base64", "value": b64(png)}
    first = {"image": image, "image_id": "m", "point_coords": [[60, 40]], "point_labels": [1],
             "format": "binary"}  # fmt: skip
    logits = np.load(
        io.BytesIO((await client.post("/roboflow/sam/segment_image", json=first)).content)
    )
    refine = {"image_id": "m", "point_coords": [[70, 45]], "point_labels": [1],
              "has_mask_input": True, "format": "binary"}  # fmt: skip
    cached = await client.post("/roboflow/sam/segment_image", json=refine)
    assert cached.status_code == 200, cached.text
    sent = {
        **refine,
        "mask_input": b64(npy(logits["low_res_masks"])),
        "mask_input_format": "binary",
    }
    explicit = await client.post("/roboflow/sam/segment_image", json=sent)
    np.testing.assert_array_equal(
        np.load(io.BytesIO(cached.content))["masks"], np.load(io.BytesIO(explicit.content))["masks"]
    )
    plain = {**refine, "has_mask_input": False}
    without = np.load(
        io.BytesIO((await client.post("/roboflow/sam/segment_image", json=plain)).content)
    )
    assert not np.array_equal(
        without["low_res_masks"], np.load(io.BytesIO(cached.content))["low_res_masks"]
    )
    # The image_id now names another image: its mask is not that image's mask input.
    other = {"type": "base64", "value": b64(encode(make_image(seed=5)))}
    renamed = {**refine, "image": other}
    assert (await client.post("/roboflow/sam/segment_image", json=renamed)).status_code == 422
    polygons = {**refine, "mask_input": [[[5, 5], [40, 5], [40, 40]]], "format": "json"}
    assert (await client.post("/roboflow/sam/segment_image", json=polygons)).status_code == 200


async def test_numpy_images_are_npy_never_pickles(
    client: httpx.AsyncClient, png: bytes, image: np.ndarray
) -> None:
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    body = {"image": {"type": "numpy", "value": b64(npy(bgr))}, "format": "binary"}
    from_npy = await client.post("/roboflow/sam/embed_image", json=body)
    from_png = await client.post(
        "/roboflow/sam/embed_image",
        json={"image": {"type": "base64", "value": b64(png)}, "format": "binary"},
    )
    assert from_npy.status_code == 200 and from_npy.content == from_png.content
    pickled = {"image": {"type": "numpy", "value": b64(pickle.dumps(bgr))}}
    refused = await client.post("/roboflow/sam/embed_image", json=pickled)
    assert refused.status_code == 422 and "pickle" in refused.json()["message"]


@pytest.fixture
def image_host(png: bytes) -> Iterator[str]:
    """A loopback HTTP server: /a.png is the image, /moved redirects to it."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/a.png":
                self.send_response(200)
                self.send_header("Content-Length", str(len(png)))
                self.end_headers()
                self.wfile.write(png)
            else:
                self.send_response(302)
                self.send_header("Location", "/a.png")
                self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_url_images_only_from_allowed_hosts(
    checkpoint: Path, client: httpx.AsyncClient, image_host: str, png: bytes
) -> None:
    body = {"image": {"type": "url", "value": f"{image_host}/a.png"}, "format": "binary"}
    refused = await client.post("/roboflow/sam/embed_image", json=body)
    assert (
        refused.status_code == 422
        and "REPVIT_SAM_ROBOFLOW_IMAGE_URL_HOSTS" in refused.json()["message"]
    )
    app = create_app(make_settings(checkpoint, warmup=False, roboflow_image_url_hosts="127.0.0.1"))
    async with app.router.lifespan_context(app):
        await app.state.load_task
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            fetched = await http.post("/roboflow/sam/embed_image", json=body)
            assert fetched.status_code == 200, fetched.text
            direct = {"image": {"type": "base64", "value": b64(png)}, "format": "binary"}
            assert (
                fetched.content
                == (await http.post("/roboflow/sam/embed_image", json=direct)).content
            )
            moved = {"image": {"type": "url", "value": f"{image_host}/moved"}}
            redirected = await http.post("/roboflow/sam/embed_image", json=moved)
            assert redirected.status_code == 422 and "redirect" in redirected.json()["message"]
            other = {"image": {"type": "url", "value": "http://169.254.169.254/latest/meta-data"}}
            assert (await http.post("/roboflow/sam/embed_image", json=other)).status_code == 422


@pytest.mark.parametrize(
    ("route", "body", "status", "names"),
    [
        ("embed_image", {}, 422, "image is required"),
        ("embed_image", {"image": {"type": "pil", "value": "x"}}, 422, "image.type"),
        ("embed_image", {"image": {"type": "base64", "value": "!!"}}, 422, "image.value"),
        ("embed_image", {"image": {"type": "base64", "value": b64(b"nope")}}, 422, "image.value"),
        (
            "embed_image",
            {"image": {"type": "base64", "value": "x"}, "format": "xml"},
            422,
            "format",
        ),
        ("segment_image", {"point_coords": [[1, 1]], "point_labels": [1]}, 422, "image_id"),
        (
            "segment_image",
            {"image_id": "never-seen", "point_labels": [1], "point_coords": [[1, 1]]},
            404,
            "never-seen",
        ),
        (
            "segment_image",
            {"embeddings": [[1.0]], "orig_im_size": [10, 10]},
            422,
            "embeddings must be",
        ),
        ("segment_image", {"embeddings": [[1.0]]}, 422, "orig_im_size"),
    ],
)
async def test_bad_requests_get_roboflow_errors(
    client: httpx.AsyncClient, route: str, body: dict, status: int, names: str
) -> None:
    response = await client.post(f"/roboflow/sam/{route}", json=body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"message"} and names in response.json()["message"]


@pytest.mark.parametrize(
    ("prompt", "names"),
    [
        ({}, "empty prompt"),  # Roboflow's defaults: one padding point
        ({"point_coords": [[1, 1]], "point_labels": [2]}, "point_labels"),
        ({"point_coords": [[1, 1], [2, 2]], "point_labels": [1]}, "one label per point"),
        ({"point_coords": [[900, 1]], "point_labels": [1]}, "outside"),
        (
            {
                "point_coords": [[1, 1]],
                "point_labels": [1],
                "has_mask_input": True,
                "use_mask_input_cache": False,
            },
            "mask_input",
        ),
        (
            {
                "point_coords": [[1, 1]],
                "point_labels": [1],
                "has_mask_input": True,
                "mask_input": b64(pickle.dumps(1)),
                "mask_input_format": "binary",
            },
            "pickle",
        ),
    ],
)
async def test_bad_prompts(client: httpx.AsyncClient, png: bytes, prompt: dict, names: str) -> None:
    body = {"image": {"type": "base64", "value": b64(png)}, **prompt}
    response = await client.post("/roboflow/sam/segment_image", json=body)
    assert response.status_code == 422, response.text
    assert names in response.json()["message"]


async def test_the_api_key_is_read_where_roboflow_sends_it(checkpoint: Path, png: bytes) -> None:
    app = create_app(make_settings(checkpoint, api_key="s3cret", warmup=False))
    body = {"image": {"type": "base64", "value": b64(png)}, "format": "binary"}
    async with app.router.lifespan_context(app):
        await app.state.load_task
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            url = "/roboflow/sam/embed_image"
            for refused in (
                await http.post(url, json=body),
                await http.post(url, json={**body, "api_key": "wrong"}),
                await http.post(f"{url}?api_key=wrong", json=body),
            ):
                assert refused.status_code == 401 and set(refused.json()) == {"message"}
            for ok in (
                await http.post(url, json={**body, "api_key": "s3cret"}),
                await http.post(f"{url}?api_key=s3cret", json=body),
                await http.post(url, json=body, headers={"Authorization": "Bearer s3cret"}),
                await http.post(url, json=body, headers={"X-API-Key": "s3cret"}),
            ):
                assert ok.status_code == 200, ok.text
