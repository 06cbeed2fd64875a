"""POST /segment: equality with the library's Predictor, formats, refinement, bad prompts."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from service_helpers import TEST_IMAGE_SIZE, TEST_VARIANT, encode, make_image

from repvit_sam import Predictor, build_repvit_sam
from repvit_sam_server import segmentation
from tests.comparisons import LOGIT_ATOL, assert_masks_match_logits

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def predictor(checkpoint) -> Predictor:
    """The library's Predictor on the same checkpoint, built independently of the app. It
    encodes contiguously, the service channels-last: the same function, other roundings, so
    masks are compared where the logit is clear of 0 (tests.comparisons)."""
    model = build_repvit_sam(
        checkpoint, variant=TEST_VARIANT, image_size=TEST_IMAGE_SIZE, fuse=True
    )
    return Predictor(model)


def rle_mask(segmentation: dict) -> np.ndarray:
    rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode()}
    return mask_utils.decode(rle).astype(bool)


@pytest.mark.parametrize(
    ("prompt", "multimask"),
    [
        ({"points": [[60, 40], [10, 100]], "labels": [1, 0]}, False),
        ({"points": [[60, 40]]}, True),
        ({"boxes": [[30, 20, 90, 70]]}, False),
        ({"boxes": [[30, 20, 90, 70], [0, 0, 160, 120]], "points": [[50, 40]]}, True),
    ],
    ids=["points", "multimask", "one-box", "boxes-and-points"],
)
async def test_masks_equal_predictor_masks(
    client, image, embedding_id, predictor, prompt, multimask
):
    body = {"embedding_id": embedding_id, "multimask": multimask, **prompt}
    response = await client.post("/segment", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    embedding = predictor.embed(image)
    points = np.array(prompt["points"]) if "points" in prompt else None
    labels = np.array(prompt.get("labels", [1] * len(prompt.get("points", []))))
    boxes = np.array(prompt["boxes"]) if "boxes" in prompt else None
    logits, scores, low_res = predictor.predict(
        points,
        labels if points is not None else None,
        boxes,
        None,
        multimask,
        return_logits=True,
        embedding=embedding,
    )
    num_prompts = len(prompt.get("boxes", [None]))
    logits = logits.reshape(num_prompts, -1, 120, 160)
    scores = scores.reshape(num_prompts, -1)
    candidates = logits.shape[1]
    served = np.load(io.BytesIO((await client.get(f"/logits/{answer['logits_id']}")).content))
    np.testing.assert_allclose(served, low_res.reshape(served.shape), atol=LOGIT_ATOL)
    assert len(answer["masks"]) == num_prompts * candidates
    for index, item in enumerate(answer["masks"]):
        prompt_index, candidate = divmod(index, candidates)
        assert item["prompt"] == prompt_index
        decoded = rle_mask(item["segmentation"])
        assert_masks_match_logits(decoded, logits[prompt_index, candidate], LOGIT_ATOL)
        assert item["area"] == int(decoded.sum())
        assert item["score"] == pytest.approx(float(scores[prompt_index, candidate]), abs=1e-5)
        ys, xs = np.nonzero(decoded)
        if len(xs):
            assert item["bbox"] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]
    assert answer["width"] == 160 and answer["height"] == 120


async def test_png_and_polygon_formats(client, embedding_id):
    base = {"embedding_id": embedding_id, "boxes": [[30, 20, 90, 70]]}
    rle = (await client.post("/segment", json=base)).json()["masks"][0]
    expected = rle_mask(rle["segmentation"])
    png = (await client.post("/segment", json={**base, "format": "png"})).json()["masks"][0]
    with Image.open(io.BytesIO(base64.b64decode(png["segmentation"]))) as decoded:
        np.testing.assert_array_equal(np.asarray(decoded.convert("L")) > 0, expected)
    poly = (await client.post("/segment", json={**base, "format": "polygons"})).json()["masks"][0]
    assert isinstance(poly["segmentation"], list)
    if expected.any():
        xs = np.concatenate([np.asarray(p)[0::2] for p in poly["segmentation"]])
        x, _, w, _ = rle["bbox"]
        assert xs.min() >= x - 1 and xs.max() <= x + w


async def test_refinement_with_mask_input_id(client, image, embedding_id, predictor):
    first = await client.post(
        "/segment", json={"embedding_id": embedding_id, "points": [[60, 40]], "multimask": True}
    )
    body = first.json()
    logits = np.load(io.BytesIO((await client.get(f"/logits/{body['logits_id']}")).content))
    assert logits.shape == (1, 3, 64, 64)
    best = int(np.argmax([m["score"] for m in body["masks"]]))
    second = await client.post(
        "/segment",
        json={
            "embedding_id": embedding_id,
            "points": [[60, 40]],
            "mask_input_id": body["logits_id"],
        },
    )
    assert second.status_code == 200, second.text
    expected, _, low_res = predictor.predict(
        np.array([[60, 40]]),
        np.array([1]),
        mask_input=logits[0, best][None],
        multimask_output=False,
        return_logits=True,
        embedding=predictor.embed(image),
    )
    refined = await client.get(f"/logits/{second.json()['logits_id']}")
    np.testing.assert_allclose(np.load(io.BytesIO(refined.content))[0], low_res, atol=LOGIT_ATOL)
    decoded = rle_mask(second.json()["masks"][0]["segmentation"])
    assert_masks_match_logits(decoded, expected[0], LOGIT_ATOL)


async def test_refinement_from_a_chosen_candidate(client, image, embedding_id, predictor):
    first = await client.post(
        "/segment", json={"embedding_id": embedding_id, "points": [[60, 40]], "multimask": True}
    )
    body = first.json()
    logits = np.load(io.BytesIO((await client.get(f"/logits/{body['logits_id']}")).content))
    best = int(np.argmax([m["score"] for m in body["masks"]]))
    chosen = (best + 1) % 3  # not the one mask_input_id alone would refine
    refine = {"embedding_id": embedding_id, "points": [[60, 40]]}
    refine |= {"mask_input_id": body["logits_id"], "mask_input_index": chosen}
    second = await client.post("/segment", json=refine)
    assert second.status_code == 200, second.text
    _, _, low_res = predictor.predict(
        np.array([[60, 40]]),
        np.array([1]),
        mask_input=logits[0, chosen][None],
        multimask_output=False,
        return_logits=True,
        embedding=predictor.embed(image),
    )
    _, _, from_best = predictor.predict(
        np.array([[60, 40]]),
        np.array([1]),
        mask_input=logits[0, best][None],
        multimask_output=False,
        return_logits=True,
        embedding=predictor.embed(image),
    )
    assert np.abs(low_res - from_best).max() > 10 * LOGIT_ATOL, "the candidates refine alike"
    refined = await client.get(f"/logits/{second.json()['logits_id']}")
    np.testing.assert_allclose(np.load(io.BytesIO(refined.content))[0], low_res, atol=LOGIT_ATOL)

    # One candidate kept (multimask false): index 1 is out of range; an index needs an id.
    single = await client.post("/segment", json={"embedding_id": embedding_id, "points": [[9, 9]]})
    out = {**refine, "mask_input_id": single.json()["logits_id"], "mask_input_index": 1}
    response = await client.post("/segment", json=out)
    assert response.status_code == 422 and "mask_input_index" in response.json()["detail"]
    alone = {"embedding_id": embedding_id, "points": [[9, 9]], "mask_input_index": 0}
    response = await client.post("/segment", json=alone)
    assert response.status_code == 422 and "mask_input_index" in json.dumps(response.json())


async def test_one_shot_multipart_segment(client, png, embedding_id):
    by_id = await client.post("/segment", json={"embedding_id": embedding_id, "points": [[9, 9]]})
    request = json.dumps({"points": [[9, 9]]})
    response = await client.post(
        "/segment", files={"image": ("a.png", png)}, data={"request": request}
    )
    assert response.status_code == 200, response.text
    assert response.json()["embedding_id"] == embedding_id
    assert response.json()["masks"] == by_id.json()["masks"]
    missing = await client.post("/segment", files={"picture": ("a.png", png)}, data={})
    assert missing.status_code == 422 and "image" in json.dumps(missing.json()["detail"])
    bad = await client.post(
        "/segment", files={"image": ("a.png", b"nope")}, data={"request": request}
    )
    assert bad.status_code == 422 and "image" in bad.json()["detail"]


BAD_PROMPTS = [
    ({"points": [[1, 1], [2, 2]], "labels": [1]}, "labels"),
    ({"points": [[170, 10]]}, "points[0]"),
    ({"points": [[10, -1]]}, "points[0]"),
    ({"boxes": [[0, 0, 10, 130]]}, "boxes[0]"),
    ({"boxes": [[10, 10, 10, 50]]}, "boxes[0]"),
    ({"boxes": [[50, 10, 10, 50]]}, "boxes[0]"),
    ({}, "empty prompt"),
    ({"points": [], "boxes": []}, "empty prompt"),
    ({"points": "abc"}, "points"),
    ({"points": [["a", "b"]]}, "points"),
    ({"points": [[1, 2, 3]]}, "points"),
    ({"points": [[1, 2]], "labels": [2]}, "labels"),
    ({"points": [[1, 2]], "multimask": "maybe"}, "multimask"),
    ({"points": [[1, 2]], "format": "gif"}, "format"),
    ({"points": [[1, 2]], "colour": "red"}, "colour"),
    ({"points": [[1, 1]] * 9}, "points"),
    ({"boxes": [[0, 0, 5, 5]] * 9}, "boxes"),
    ({"points": [[1, 2]], "mask_input_id": "xyz"}, "mask_input_id"),
    ({"points": [[1, 2]], "mask_input_id": "0" * 32, "mask_input_index": -1}, "mask_input_index"),
]


@pytest.mark.parametrize(("prompt", "word"), BAD_PROMPTS)
async def test_bad_prompts_are_422_naming_the_field(client, embedding_id, prompt, word):
    response = await client.post("/segment", json={"embedding_id": embedding_id, **prompt})
    assert response.status_code == 422, response.text
    assert word in json.dumps(response.json()["detail"])


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        ('{"embedding_id": "%s", "points": [[NaN, 1]]}', "points"),
        ('{"embedding_id": "%s", "points": [[Infinity, 1]]}', "points"),
        ('{"embedding_id": "%s", "boxes": [[0, 0, 1e999, 5]]}', "boxes"),
        ('{"embedding_id": "%s", "points": [[1, 1]]', "json"),
        ("not json at all %s", "json"),
    ],
    ids=["nan", "infinity", "overflow-inf", "truncated-json", "not-json"],
)
async def test_non_finite_and_malformed_json_is_422(client, embedding_id, raw, word):
    headers = {"Content-Type": "application/json"}
    response = await client.post("/segment", content=raw % embedding_id, headers=headers)
    assert response.status_code == 422, response.text
    assert word in json.dumps(response.json()["detail"]).lower()


async def test_unknown_ids_are_404(client, embedding_id):
    unknown = "0" * 32
    response = await client.post("/segment", json={"embedding_id": unknown, "points": [[1, 1]]})
    assert response.status_code == 404 and "embedding_id" in response.json()["detail"]
    response = await client.post(
        "/segment",
        json={"embedding_id": embedding_id, "points": [[1, 1]], "mask_input_id": unknown},
    )
    assert response.status_code == 404 and "logits" in response.json()["detail"]
    assert (await client.get(f"/logits/{unknown}")).status_code == 404
    response = await client.post("/segment", json={"points": [[1, 1]]})
    assert response.status_code == 422 and "embedding_id" in json.dumps(response.json()["detail"])


async def test_mask_input_for_another_number_of_prompts_is_422(client, embedding_id):
    two = {"embedding_id": embedding_id, "boxes": [[0, 0, 50, 50], [10, 10, 60, 60]]}
    logits_id = (await client.post("/segment", json=two)).json()["logits_id"]
    three = {**two, "boxes": [*two["boxes"], [5, 5, 20, 20]], "mask_input_id": logits_id}
    response = await client.post("/segment", json=three)
    assert response.status_code == 422 and "mask_input_id" in response.json()["detail"]


async def test_uploaded_logits(client, embedding_id):
    stream = io.BytesIO()
    np.save(stream, np.zeros((64, 64), np.float32))
    headers = {"Content-Type": "application/octet-stream"}
    response = await client.post("/logits", content=stream.getvalue(), headers=headers)
    assert response.status_code == 200, response.text
    logits_id = response.json()["logits_id"]
    body = {"embedding_id": embedding_id, "points": [[5, 5]], "mask_input_id": logits_id}
    assert (await client.post("/segment", json=body)).status_code == 200
    stream = io.BytesIO()
    np.save(stream, np.zeros((3, 32), np.float32))
    response = await client.post("/logits", content=stream.getvalue(), headers=headers)
    assert response.status_code == 422 and "logits" in response.json()["detail"]
    response = await client.post("/logits", content=b"garbage", headers=headers)
    assert response.status_code == 422 and "logits" in response.json()["detail"]


def _npy(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array)
    return stream.getvalue()


@pytest.mark.parametrize(
    "case",
    ["npz", "huge_header", "short_data", "trailing_bytes", "no_prompts", "too_many_prompts"],
)
async def test_uploaded_logits_are_one_npy_array_checked_before_reading(client, case):
    side = 64  # the test model's low-res side
    if case == "npz":
        stream = io.BytesIO()
        np.savez(stream, a=np.zeros((side, side), np.float32))
        body = stream.getvalue()
    elif case == "huge_header":
        # 130 bytes claiming exabytes: refused from the header, before any allocation.
        header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1), np.float32))
        header["shape"] = (99999999999, 1, side, side)
        stream = io.BytesIO()
        np.lib.format.write_array_header_1_0(stream, header)
        body = stream.getvalue()
    elif case == "short_data":
        body = _npy(np.zeros((2, 1, side, side), np.float32))[:-4]
    elif case == "trailing_bytes":
        body = _npy(np.zeros((side, side), np.float32)) + b"junk"
    else:
        count = 0 if case == "no_prompts" else 9  # the test service allows 8
        body = _npy(np.zeros((count, 1, side, side), np.float32))
    headers = {"Content-Type": "application/octet-stream"}
    response = await client.post("/logits", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert "logits" in response.json()["detail"]


async def test_masks_are_drawn_a_few_prompts_at_a_time(app, client, embedding_id, monkeypatch):
    body = {
        "embedding_id": embedding_id,
        "boxes": [[10, 10, 60, 60], [5, 5, 120, 85], [30, 20, 90, 70]],
        "multimask": True,
    }
    whole = (await client.post("/segment", json=body)).json()
    predictor = app.state.service.predictor
    drawn = []
    upscale = predictor.upscale_masks

    def counted(logits, *args):
        drawn.append(len(logits))
        return upscale(logits, *args)

    monkeypatch.setattr(predictor, "upscale_masks", counted)
    monkeypatch.setattr(segmentation, "MASK_DRAWING_BYTES", 1)  # one prompt per step
    piecewise = (await client.post("/segment", json=body)).json()
    assert drawn == [1, 1, 1]
    assert [m["segmentation"] for m in piecewise["masks"]] == [
        m["segmentation"] for m in whole["masks"]
    ]
    assert len(whole["masks"]) == 9


async def test_mask_input_of_another_image_is_refused(client, embedding_id):
    other = await client.post("/embed", files={"image": ("b.png", encode(make_image(seed=5)))})
    other_id = other.json()["embedding_id"]
    assert other_id != embedding_id
    first = await client.post("/segment", json={"embedding_id": embedding_id, "points": [[5, 5]]})
    logits_id = first.json()["logits_id"]
    refine = {"points": [[5, 5]], "mask_input_id": logits_id}
    same = await client.post("/segment", json={"embedding_id": embedding_id, **refine})
    assert same.status_code == 200
    response = await client.post("/segment", json={"embedding_id": other_id, **refine})
    assert response.status_code == 422
    assert "mask_input_id" in response.json()["detail"] and embedding_id in response.text


async def test_an_upload_and_an_embedding_id_together_are_refused(client, embedding_id):
    form = {"request": json.dumps({"embedding_id": embedding_id, "points": [[5, 5]]})}
    files = {"image": ("a.png", encode(make_image()))}
    response = await client.post("/segment", files=files, data=form)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "request", "embedding_id"]


async def test_polygons_are_simplified_and_bounded(app, client, embedding_id, monkeypatch):
    settings = app.state.settings
    base = {"embedding_id": embedding_id, "boxes": [[30, 20, 90, 70]], "format": "polygons"}
    monkeypatch.setattr(settings, "polygon_tolerance", 0.0)
    traced = (await client.post("/segment", json=base)).json()["masks"][0]["segmentation"]
    assert traced, "the test model's mask for this box is empty: pick another box"
    monkeypatch.setattr(settings, "polygon_tolerance", 1.0)
    simplified = (await client.post("/segment", json=base)).json()["masks"][0]["segmentation"]
    assert sum(map(len, simplified)) < sum(map(len, traced))
    monkeypatch.setattr(settings, "max_polygon_points", 2)
    refused = await client.post("/segment", json=base)
    assert refused.status_code == 413
    assert "MAX_POLYGON_POINTS" in refused.json()["detail"]


async def test_answers_over_the_output_bound_are_refused_before_decoding(
    app, client, embedding_id, monkeypatch
):
    service = app.state.service
    monkeypatch.setattr(app.state.settings, "max_output_pixels", 3 * 160 * 120 - 1)

    async def never(*args, **kwargs):
        raise AssertionError("the decoder ran for a request over the output bound")

    monkeypatch.setattr(service, "decode", never)
    body = {"embedding_id": embedding_id, "points": [[40, 30]], "multimask": True}
    refused = await client.post("/segment", json=body)
    assert refused.status_code == 413
    assert "MAX_OUTPUT_PIXELS" in refused.json()["detail"]


async def test_json_routes_take_json_only_strictly_typed_and_bounded(
    app, client, embedding_id, monkeypatch
):
    body = {"embedding_id": embedding_id, "points": [[40, 30]]}
    # A text/plain POST needs no CORS preflight: a web page could send it cross-site.
    plain = await client.post(
        "/segment", content=json.dumps(body), headers={"Content-Type": "text/plain"}
    )
    assert plain.status_code == 415 and "application/json" in plain.json()["detail"]
    yes = await client.post("/segment", json={**body, "multimask": "yes"})
    assert yes.status_code == 422 and yes.json()["detail"][0]["loc"] == ["body", "multimask"]
    monkeypatch.setattr(app.state.settings, "max_json_bytes", 100)
    padded = {**body, "points": [[40, 30]] * 20}
    large = await client.post("/segment", json=padded)
    assert large.status_code == 413 and "max_json_bytes" in large.json()["detail"]


async def test_answers_are_encoded_off_the_event_loop(client, embedding_id, monkeypatch):
    """A large answer encoded on the event loop would hold every other request meanwhile."""
    from repvit_sam_server.schemas import MasksResponse, SegmentResponse

    threads: dict[str, str] = {}
    for model in (SegmentResponse, MasksResponse):
        encode = model.model_dump_json

        def recorded(self, *args, _encode=encode, **kwargs):
            threads[type(self).__name__] = threading.current_thread().name
            return _encode(self, *args, **kwargs)

        monkeypatch.setattr(model, "model_dump_json", recorded)
    segment = await client.post("/segment", json={"embedding_id": embedding_id, "points": [[9, 9]]})
    masks = await client.post("/masks", json={"embedding_id": embedding_id, "points_per_side": 4})
    assert (segment.status_code, masks.status_code) == (200, 200)
    assert segment.headers["content-type"] == "application/json"
    assert SegmentResponse.model_validate_json(segment.content).masks
    assert set(threads) == {"SegmentResponse", "MasksResponse"}
    assert threading.main_thread().name not in threads.values()


async def test_an_abandoned_answer_stops_encoding_masks(client, embedding_id, monkeypatch):
    """The masks are encoded on a worker thread; a client that left stops it at the next mask."""
    encoded: list[int] = []
    started = threading.Event()
    encode_mask = segmentation.encode_mask

    def slow(mask, *args):
        encoded.append(1)
        started.set()
        time.sleep(0.05)
        return encode_mask(mask, *args)

    monkeypatch.setattr(segmentation, "encode_mask", slow)
    body = {"embedding_id": embedding_id, "boxes": [[10, 10, 60, 60]] * 8, "multimask": True}
    request = asyncio.ensure_future(client.post("/segment", json=body))
    while not started.is_set():
        await asyncio.sleep(0.005)
    request.cancel()  # the client goes away (the disconnect cancels the handler the same way)
    with pytest.raises(asyncio.CancelledError):
        await request
    await asyncio.sleep(0.2)
    stopped_at = len(encoded)
    await asyncio.sleep(0.3)
    assert len(encoded) == stopped_at < 24
