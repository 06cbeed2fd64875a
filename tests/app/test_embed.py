"""POST /embed, GET and DELETE /embeddings/{id}: formats, conversions, ids and bad uploads."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image
from service_helpers import encode, make_image, make_settings

from repvit_sam_server import create_app

pytestmark = pytest.mark.anyio


async def test_embed_answers_size_and_caches_by_content(client, png):
    first = (await client.post("/embed", files={"image": ("a.png", png)})).json()
    again = await client.post("/embed", files={"image": ("b.bmp", encode(make_image(), "BMP"))})
    assert again.status_code == 200
    assert (first["width"], first["height"]) == (160, 120)
    assert again.json() == {**first, "cached": True}


@pytest.mark.parametrize(
    ("fmt", "convert", "options"),
    [
        ("JPEG", None, {"quality": 95}),
        ("WEBP", None, {"lossless": True}),
        ("TIFF", None, {}),
        ("BMP", None, {}),
        ("PNG", "L", {}),
        ("PNG", "P", {}),
        ("PNG", "RGBA", {}),
    ],
)
async def test_embed_accepts_formats_and_modes(client, fmt, convert, options):
    pil = Image.fromarray(make_image(seed=3))
    if convert:
        pil = pil.convert(convert)
    response = await client.post("/embed", files={"image": ("x", encode(pil, fmt, **options))})
    assert response.status_code == 200, response.text
    assert (response.json()["width"], response.json()["height"]) == (160, 120)


async def test_embed_accepts_16_bit(client):
    pixels = (np.arange(120 * 160, dtype=np.uint16).reshape(120, 160) * 3).astype(np.uint16)
    response = await client.post("/embed", files={"image": ("x", encode(Image.fromarray(pixels)))})
    assert response.status_code == 200, response.text


async def test_embed_applies_exif_orientation(client):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    data = encode(Image.fromarray(make_image(seed=4)), "JPEG", exif=exif.tobytes())
    body = (await client.post("/embed", files={"image": ("x.jpg", data)})).json()
    assert (body["width"], body["height"]) == (120, 160)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming ``width``x``height`` pixels in a few bytes (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("data", "status", "word"),
    [
        (b"this is not an image", 422, "image"),
        (b"", 422, "image"),
        (encode(make_image())[:300], 422, "image"),
        (_png_header_only(100_000, 100_000), 413, "pixels"),
        (_png_header_only(1200, 1000), 413, "limit"),
    ],
    ids=["not-an-image", "zero-bytes", "truncated", "decompression-bomb", "too-many-pixels"],
)
async def test_embed_rejects_bad_images(client, data, status, word):
    response = await client.post("/embed", files={"image": ("x.png", data)})
    assert response.status_code == status, response.text
    assert word in str(response.json()["detail"])


async def test_embed_rejects_oversized_upload(client):
    data = b"\x89PNG" + bytes(4_000_000)
    response = await client.post("/embed", files={"image": ("x.png", data)})
    assert response.status_code == 413
    assert "max_upload_bytes" in response.json()["detail"]


async def test_embed_requires_the_image_field(client):
    response = await client.post("/embed", files={"picture": ("x.png", b"123")})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "image"]
    response = await client.post("/embed", json={"image": "x"})
    assert response.status_code == 422


async def test_concurrent_embeds_of_one_image_encode_once(app, client):
    data = encode(make_image(seed=11))
    metrics = app.state.metrics
    before = metrics.model_calls("encoder")
    responses = await asyncio.gather(
        *(client.post("/embed", files={"image": ("x.png", data)}) for _ in range(4))
    )
    bodies = [r.json() for r in responses]
    assert metrics.model_calls("encoder") == before + 1
    assert len({b["embedding_id"] for b in bodies}) == 1
    assert sorted(b["cached"] for b in bodies) == [False, True, True, True]


async def test_get_and_delete_embedding(app, client, image, embedding_id):
    response = await client.get(f"/embeddings/{embedding_id}")
    assert response.status_code == 200
    features = np.load(io.BytesIO(response.content))
    assert features.shape == (1, 256, 16, 16) and features.dtype == np.float32
    expected = app.state.service.predictor.embed(image).numpy()
    np.testing.assert_allclose(features, expected, atol=1e-5)
    assert response.headers["X-Original-Size"] == "120,160"
    assert (await client.delete(f"/embeddings/{embedding_id}")).status_code == 204
    assert (await client.get(f"/embeddings/{embedding_id}")).status_code == 404
    assert (await client.delete(f"/embeddings/{embedding_id}")).status_code == 404
    response = await client.get("/embeddings/not-an-id")
    assert response.status_code == 422
    assert "embedding_id" in str(response.json()["detail"])


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
async def test_encoder_backend_setting(checkpoint, png, image, backend):
    from repvit_sam import Predictor, build_repvit_sam
    from repvit_sam.backends import is_available

    if not is_available(backend):
        pytest.skip(f"{backend} is not installed")
    application = create_app(make_settings(checkpoint, backend=backend))
    async with application.router.lifespan_context(application):
        await application.state.load_task
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            embedding_id = (await http.post("/embed", files={"image": ("a.png", png)})).json()[
                "embedding_id"
            ]
            response = await http.get(f"/embeddings/{embedding_id}")
    assert application.state.service.predictor.encoder.name == backend
    features = np.load(io.BytesIO(response.content))
    reference = Predictor(build_repvit_sam(checkpoint, variant="m0_9", image_size=256))
    np.testing.assert_allclose(features, reference.embed(image).numpy(), atol=5e-3)


def _chunks(body: bytes, size: int = 1 << 16):
    """A body sent without Content-Length (chunked), as streaming clients send it."""

    async def stream():
        for start in range(0, len(body), size):
            yield body[start : start + size]

    return stream()


@pytest.mark.parametrize("route", ["/segment", "/logits", "/embed"])
async def test_chunked_bodies_are_counted_against_the_limit(client, embedding_id, route):
    padding = b" " * 4_000_000  # over the test service's max_upload_bytes + framing
    body = b'{"embedding_id": "%s", "points": [[5, 5]]' % embedding_id.encode() + padding + b"}"
    headers = {"Content-Type": "application/json"}
    if route == "/embed":
        headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
        body = b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        body += padding + b"\r\n--xyz--\r\n"
    elif route == "/logits":
        headers = {"Content-Type": "application/octet-stream"}
    response = await client.post(route, content=_chunks(body), headers=headers)
    assert response.status_code == 413, response.text
    assert "max_upload_bytes" in response.json()["detail"]
    small = b'{"embedding_id": "%s", "points": [[5, 5]]}' % embedding_id.encode()
    json_type = {"Content-Type": "application/json"}
    fine = await client.post("/segment", content=_chunks(small, 7), headers=json_type)
    assert fine.status_code == 200, fine.text
