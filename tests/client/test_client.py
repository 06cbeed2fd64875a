"""``repvit_sam.client``: Client and RepViTSAM.remote against the app, through transport seams."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from repvit_sam import (
    EdgeDetector,
    MaskGenerator,
    RepViTSAM,
    build_repvit_sam,
    load_image,
)
from repvit_sam.client import (
    AuthenticationError,
    AutoMask,
    Client,
    ConnectError,
    NotFoundError,
    RemoteError,
    ServerError,
    ServiceBusyError,
    TaskTimeoutError,
    ValidationError,
)
from repvit_sam_server import Settings, create_app
from tests.comparisons import (
    LOGIT_ATOL,
    amg_record_logits,
    assert_8bit_maps_agree,
    assert_amg_records_agree,
    assert_masks_match_logits,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("client") / "tiny.pt"
    torch.save(build_repvit_sam(variant="m0_9", image_size=256).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def served(checkpoint) -> Iterator[TestClient]:
    settings = Settings(
        checkpoint=checkpoint, variant="m0_9", image_size=256, api_key="key", backend="torch"
    )
    with TestClient(create_app(settings)) as test_client:
        test_client.portal.call(lambda: test_client.app.state.load_task)
        yield test_client


class AppTransport(httpx.BaseTransport):
    """Sends the client's httpx requests through the TestClient.

    Newer Starlette builds its TestClient on ``httpx2``, whose transport the client's ``httpx``
    cannot use directly; this seam copies requests and responses across.
    """

    def __init__(self, test_client: TestClient) -> None:
        self.test_client = test_client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.test_client.request(
            request.method,
            str(request.url),
            headers=request.headers.multi_items(),
            content=request.read(),
        )
        return httpx.Response(
            response.status_code,
            headers=response.headers.multi_items(),
            content=response.content,
        )


@pytest.fixture
def client(served) -> Client:
    return Client("http://test", api_key="key", transport=AppTransport(served))


@pytest.fixture(scope="module")
def local(checkpoint) -> RepViTSAM:
    """The same checkpoint without the service: its encoder runs contiguous, the service's
    channels-last (the same function, other roundings), so results agree by tests.comparisons."""
    model = build_repvit_sam(checkpoint, variant="m0_9", image_size=256, fuse=True)
    return RepViTSAM.from_model(model)


def png_bytes(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (90, 130, 3), dtype=np.uint8)
    stream = io.BytesIO()
    Image.fromarray(image).save(stream, format="PNG")
    return stream.getvalue()


def local_logits(local: RepViTSAM, image: bytes, prediction) -> np.ndarray:
    """``prediction``'s full-size logits (``prediction.masks`` is them thresholded at 0)."""
    low_res = torch.from_numpy(prediction.low_res_logits)
    logits = local.predictor.upscale_masks(
        low_res.reshape(-1, *low_res.shape[-3:]), local.embed(image), return_logits=True
    )
    return logits.reshape(prediction.masks.shape).numpy()


def test_embed_segment_and_fetch(client, local):
    data = png_bytes()
    embedded = client.embed(data)
    assert (embedded.width, embedded.height) == (130, 90)
    assert client.embed(data).cached
    result = client.segment(embedded.embedding_id, points=[[50, 40]], labels=[1], multimask=True)
    assert len(result.masks) == 3 and {m.prompt for m in result.masks} == {0}
    expected = local.predict(data, points=[[50, 40]], labels=[1], multimask=True)
    for item, logits in zip(result.masks, local_logits(local, data, expected), strict=True):
        assert_masks_match_logits(item.decode(), logits, LOGIT_ATOL)
    png = client.segment(embedded.embedding_id, boxes=[[5, 5, 60, 60]], format="png")
    box = local.predict(data, boxes=[5, 5, 60, 60])
    np.testing.assert_allclose(client.logits(png.logits_id)[0], box.low_res_logits, atol=LOGIT_ATOL)
    assert_masks_match_logits(png.masks[0].decode(), local_logits(local, data, box)[0], LOGIT_ATOL)
    embedding = client.embedding(embedded.embedding_id)
    assert embedding.original_size == (90, 130)
    np.testing.assert_allclose(embedding.numpy(), local.embed(data).numpy(), atol=1e-5)
    remote_logits = client.logits(result.logits_id)
    assert remote_logits.shape == (1, 3, 64, 64)
    np.testing.assert_allclose(remote_logits[0], expected.low_res_logits, atol=LOGIT_ATOL)
    one_shot = client.segment(image=data, points=[[50, 40]])
    assert one_shot.embedding_id == embedded.embedding_id
    client.delete_embedding(embedded.embedding_id)
    with pytest.raises(NotFoundError) as caught:
        client.segment(embedded.embedding_id, points=[[1, 1]])
    assert caught.value.status_code == 404


def test_errors_map_to_the_exception_tree(client, served):
    embedding_id = client.embed(png_bytes(1)).embedding_id
    with pytest.raises(ValidationError) as caught:
        client.segment(embedding_id, points=[[1, 1], [2, 2]], labels=[1])
    assert "labels" in str(caught.value.detail)
    with pytest.raises(ValidationError):
        client.embed(b"not an image")
    with pytest.raises(AuthenticationError):
        Client("http://test", transport=AppTransport(served)).embed(png_bytes())
    assert isinstance(caught.value, RemoteError)

    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"detail": "full"}, headers={"Retry-After": "2"})

    with pytest.raises(ServiceBusyError) as caught_busy:
        Client("http://test", transport=httpx.MockTransport(busy)).embed(b"x")
    assert caught_busy.value.retry_after == 2.0

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ConnectError):
        Client("http://test", transport=httpx.MockTransport(down)).embed(b"x")
    assert not Client("http://test", transport=httpx.MockTransport(down)).healthy()


@pytest.mark.parametrize(
    "prompt",
    [
        {"points": [[40, 30], [100, 70]], "labels": [1, 0]},
        {"points": [[40, 30]], "multimask": True},
        {"boxes": [10, 10, 80, 60]},
        {"boxes": [[10, 10, 80, 60], [0, 0, 130, 90]], "points": [[40, 30]], "labels": [1]},
    ],
    ids=["points", "multimask", "box", "boxes"],
)
def test_remote_predict_equals_local_predict(served, local, prompt):
    remote = RepViTSAM.remote("http://test", api_key="key", transport=AppTransport(served))
    data = png_bytes(2)
    got = remote.predict(data, **prompt)
    expected = local.predict(data, **prompt)
    assert got.masks.shape == expected.masks.shape
    assert_masks_match_logits(got.masks, local_logits(local, data, expected), LOGIT_ATOL)
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-5)
    np.testing.assert_allclose(got.low_res_logits, expected.low_res_logits, atol=LOGIT_ATOL)
    refined = remote.predict(
        data, points=[[40, 30]], mask_input=got.low_res_logits.reshape(-1, 64, 64)[:1]
    )
    local_refined = local.predict(
        data, points=[[40, 30]], mask_input=expected.low_res_logits.reshape(-1, 64, 64)[:1]
    )
    # Refined from the two sides' own logits: the mask inputs differ by ~1e-6 too.
    np.testing.assert_allclose(
        refined.low_res_logits, local_refined.low_res_logits, atol=LOGIT_ATOL
    )
    assert_masks_match_logits(refined.masks, local_logits(local, data, local_refined), LOGIT_ATOL)


def test_remote_uploads_each_image_once(served):
    uploads = []

    class Counting(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path == "/embed":
                uploads.append(request)
            return AppTransport(served).handle_request(request)

    remote = RepViTSAM.remote("http://test", api_key="key", transport=Counting())
    data = png_bytes(3)
    for x in (10, 20, 30):
        remote.predict(data, points=[[x, x]])
    assert len(uploads) == 1
    served.app.state.service.cache.delete("embedding:" + remote.embed(data))
    remote.predict(data, points=[[5, 5]])  # evicted on the service: uploaded again
    assert len(uploads) == 2


def test_masks_and_edges_equal_the_local_generators(client, local):
    data = png_bytes(4)
    image = load_image(data)
    embedding_id = client.embed(data).embedding_id
    # Untrained weights: no filter, so that every grid mask is kept.
    params = {
        "points_per_side": 2,
        "pred_iou_thresh": 0.0,
        "stability_score_thresh": 0.0,
        "box_nms_thresh": 1.0,
    }
    result = client.masks(embedding_id, **params)
    expected = MaskGenerator(local.model, output_mode="coco_rle", **params).generate(
        image, embedding=local.embed(image)
    )
    assert (result.embedding_id, result.width, result.height) == (embedding_id, 130, 90)
    assert len(result.masks) == len(expected) == 12
    for got in result.masks:
        assert isinstance(got, AutoMask)
        assert got.area == int(got.decode().sum())
    records = [dataclasses.asdict(got) for got in result.masks]
    logits = [amg_record_logits(local.predictor, local.embed(image), want) for want in expected]
    assert_amg_records_agree(records, expected, logits, iou_atol=1e-5)

    detected = EdgeDetector(local.model, points_per_side=2).detect(
        image, embedding=local.embed(image)
    )
    edges = client.edges(embedding_id, points_per_side=2)
    assert edges.shape == (90, 130) and edges.dtype == np.float32
    np.testing.assert_allclose(edges, detected.edges, atol=1e-5)
    # The PNG (the same embedding, uploaded) rounds that float map: one grey level apart at
    # most, and only at x.5 boundaries.
    png = client.edges(image=data, format="png", points_per_side=2)
    with Image.open(io.BytesIO(png)) as picture:
        pixels = np.asarray(picture)
    assert_8bit_maps_agree(pixels, detected.to_uint8(), detected.edges, atol=1e-5)


def test_masks_and_edges_errors(client):
    embedding_id = client.embed(png_bytes(5)).embedding_id
    with pytest.raises(ValidationError) as caught:
        client.masks(embedding_id, points_per_side=0)
    assert caught.value.detail[0]["loc"] == ["body", "points_per_side"]
    with pytest.raises(NotFoundError):
        client.edges("0" * 32)
    with pytest.raises(ValueError, match="needs embedding_id or image"):
        client.masks()
    with pytest.raises(ValueError, match="format must be"):
        client.edges(embedding_id, format="jpeg")  # type: ignore[call-overload]

    def slow(request: httpx.Request) -> httpx.Response:
        return httpx.Response(504, json={"detail": "the task did not finish within ..."})

    with pytest.raises(TaskTimeoutError) as timed_out:
        Client("http://test", transport=httpx.MockTransport(slow)).masks(embedding_id)
    assert timed_out.value.status_code == 504 and isinstance(timed_out.value, ServerError)
