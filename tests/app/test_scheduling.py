"""Who waits for whom on the model thread: clicks first, deadlines, dropped work, the drain."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
from service_helpers import encode, make_image, make_settings

from repvit_sam import CancelledError, DeadlineExceededError, Predictor
from repvit_sam.runtimes import is_available
from repvit_sam_server import create_app
from repvit_sam_server.errors import BusyError
from repvit_sam_server.scheduler import ModelScheduler, Priority

pytestmark = pytest.mark.anyio


@pytest.fixture
async def scheduler():
    model = ModelScheduler(max_jobs=16, max_queue_seconds=30)
    yield model
    model.close()


async def _blocked(scheduler: ModelScheduler) -> tuple[asyncio.Future, threading.Event]:
    """A job holding the model thread until the event is set."""
    release = threading.Event()
    blocker = asyncio.ensure_future(
        scheduler.run(release.wait, 10, kind="call", priority=Priority.BATCH, seconds=30)
    )
    while scheduler.depth == 0:
        await asyncio.sleep(0.01)
    return blocker, release


async def test_clicks_run_before_queued_batch_work(scheduler):
    blocker, release = await _blocked(scheduler)
    order = []
    encode = asyncio.ensure_future(
        scheduler.run(order.append, "encoder", kind="encoder", priority=Priority.BATCH, seconds=30)
    )
    await asyncio.sleep(0.05)
    click = asyncio.ensure_future(
        scheduler.run(
            order.append, "decoder", kind="decoder", priority=Priority.INTERACTIVE, seconds=30
        )
    )
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.gather(blocker, encode, click)
    assert order == ["decoder", "encoder"]


async def test_a_long_task_lets_clicks_in_between_its_steps(scheduler):
    steps, clicks = [], []
    click_arrived = threading.Event()

    def long_task(*, deadline: float, cancel) -> int:
        for step in range(50):
            if step == 5:
                click_arrived.wait(5)
            steps.append(step)
            cancel()  # a step boundary: where MaskGenerator/EdgeDetector call it
            time.sleep(0.005)
        return len(steps)

    task = asyncio.ensure_future(
        scheduler.run(
            long_task, kind="masks", priority=Priority.BATCH, seconds=30, takes_cancel=True
        )
    )
    while not steps:
        await asyncio.sleep(0.005)

    def record() -> int:
        clicks.append(len(steps))
        return len(steps)

    click = asyncio.ensure_future(
        scheduler.run(record, kind="decoder", priority=Priority.INTERACTIVE, seconds=30)
    )
    await asyncio.sleep(0.05)
    click_arrived.set()
    assert await click <= 7  # ran at the next step boundary, not after the 50 steps
    assert await task == 50


async def test_admission_is_by_expected_time_with_the_wait_as_retry_after(scheduler):
    blocker, release = await _blocked(scheduler)
    scheduler.expected["encoder"] = 40.0
    first = asyncio.ensure_future(
        scheduler.run(int, kind="encoder", priority=Priority.BATCH, seconds=60)
    )
    await asyncio.sleep(0.02)
    with pytest.raises(BusyError, match="queued ahead") as refused:
        await scheduler.run(int, kind="encoder", priority=Priority.BATCH, seconds=60)
    assert refused.value.retry_after >= 40
    # A click is not behind the queued encoder calls: it is admitted.
    click = asyncio.ensure_future(
        scheduler.run(int, kind="decoder", priority=Priority.INTERACTIVE, seconds=60)
    )
    release.set()
    await asyncio.gather(blocker, first, click)


async def test_a_call_past_its_deadline_is_dropped_unrun(scheduler):
    blocker, release = await _blocked(scheduler)
    ran = []
    with pytest.raises(DeadlineExceededError, match=r"within 0\.2 s"):
        await scheduler.run(
            ran.append, 1, kind="decoder", priority=Priority.INTERACTIVE, seconds=0.2
        )
    release.set()
    await blocker
    await scheduler.run(int, kind="call", priority=Priority.BATCH, seconds=5)  # the queue moved on
    assert ran == []


async def test_a_call_whose_caller_left_is_dropped_unrun(scheduler):
    blocker, release = await _blocked(scheduler)
    ran = []
    left = asyncio.ensure_future(
        scheduler.run(ran.append, 1, kind="decoder", priority=Priority.INTERACTIVE, seconds=30)
    )
    await asyncio.sleep(0.02)
    left.cancel()  # what CancelOnDisconnectMiddleware does when the client disconnects
    with pytest.raises(asyncio.CancelledError):
        await left
    release.set()
    await blocker
    await scheduler.run(int, kind="call", priority=Priority.BATCH, seconds=5)
    assert ran == [] and scheduler.depth == 0


async def test_a_running_task_stops_at_its_next_step_when_its_caller_leaves(scheduler):
    steps = []

    def long_task(*, deadline: float, cancel) -> None:
        for step in range(1000):
            steps.append(step)
            if cancel():
                raise CancelledError(f"stopped after {step + 1} steps")
            time.sleep(0.005)

    task = asyncio.ensure_future(
        scheduler.run(
            long_task, kind="masks", priority=Priority.BATCH, seconds=30, takes_cancel=True
        )
    )
    while len(steps) < 3:
        await asyncio.sleep(0.005)
    task.cancel()
    await scheduler.run(int, kind="call", priority=Priority.BATCH, seconds=5)
    assert len(steps) < 100


async def test_drain_refuses_new_and_unfinishable_calls_and_finishes_the_rest(scheduler):
    blocker, release = await _blocked(scheduler)
    scheduler.expected.update(decoder=0.1, encoder=50.0)
    fits = asyncio.ensure_future(
        scheduler.run(int, kind="decoder", priority=Priority.INTERACTIVE, seconds=30)
    )
    too_long = asyncio.ensure_future(
        scheduler.run(int, kind="encoder", priority=Priority.BATCH, seconds=60)
    )
    await asyncio.sleep(0.02)
    assert scheduler.drain(5.0) == 1
    with pytest.raises(BusyError, match="shutting down"):
        await too_long
    with pytest.raises(BusyError, match="shutting down"):
        await scheduler.run(int, kind="decoder", priority=Priority.INTERACTIVE, seconds=30)
    release.set()
    await blocker
    assert await fits == 0


async def test_a_click_whose_client_disconnected_is_never_decoded(app, embedding_id):
    """Through the whole app: the disconnect cancels the handler and drops its queued call."""
    service = app.state.service
    decoded_before = service.metrics.model_calls("decoder")
    release = threading.Event()
    blocker = asyncio.ensure_future(service.run(release.wait, 10))
    body = json.dumps({"embedding_id": embedding_id, "points": [[30, 30]]}).encode()
    gone = asyncio.Event()
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/segment", "raw_path": b"/segment", "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"host", b"test")],
        "client": ("127.0.0.1", 1), "server": ("test", 80), "root_path": "",
    }  # fmt: skip
    request = asyncio.ensure_future(app(scope, receive, send))
    while service.queue_depth < 2:  # the blocker and the click
        await asyncio.sleep(0.01)
    gone.set()
    await asyncio.wait_for(request, timeout=5)
    release.set()
    await blocker
    await service.run(int)  # the model thread has moved past the dropped call
    assert service.metrics.model_calls("decoder") == decoded_before
    assert not any(m["type"] == "http.response.start" for m in sent)
    assert 'status="499"' in service.metrics.render(service.cache.stats(), 0, True)


async def test_a_click_runs_between_the_layers_of_an_image_encoding(app, client, embedding_id):
    """A click sent while a new image is encoded waits for one encoder layer, not the encoder."""
    service = app.state.service
    encoder = service.predictor.model.image_encoder
    decoded_at_neck: list[int] = []

    def hold(*_) -> None:  # keeps the encoding at its second layer until the click is queued
        deadline = time.monotonic() + 5
        while service.queue_depth < 2 and time.monotonic() < deadline:
            time.sleep(0.005)

    hooks = [
        encoder.features[1].register_forward_pre_hook(hold),
        encoder.neck.register_forward_pre_hook(
            lambda *_: decoded_at_neck.append(service.metrics.model_calls("decoder"))
        ),
    ]
    before = service.metrics.model_calls("decoder")
    try:
        files = {"image": ("new.png", encode(make_image(seed=4242)))}
        embed = asyncio.ensure_future(client.post("/embed", files=files))
        while service.queue_depth == 0:
            await asyncio.sleep(0.005)
        click = await client.post(
            "/segment", json={"embedding_id": embedding_id, "points": [[9, 9]]}
        )
        embedded = await embed
    finally:
        for hook in hooks:
            hook.remove()
    assert (click.status_code, embedded.status_code) == (200, 200)
    assert embedded.json()["cached"] is False
    assert decoded_at_neck == [before + 1]  # the click was decoded before the encoder's last layer


@pytest.mark.skipif(not is_available("openvino"), reason="needs the openvino extra")
async def test_a_click_runs_between_the_parts_of_a_compiled_encoder(checkpoint):
    """With OpenVINO (auto's pick on the CPU) the encoder is compiled in ENCODER_PARTS graphs,
    and a click sent during an encoding waits for one of them, not for all."""
    application = create_app(make_settings(checkpoint, backend="openvino", encoder_parts=4))
    async with application.router.lifespan_context(application):
        await application.state.load_task
        service = application.state.service
        encoder = service.predictor.encoder
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first = await client.post("/embed", files={"image": ("a.png", encode(make_image()))})
            embedding_id = first.json()["embedding_id"]
            decoded_before_part: list[int] = []
            encoding = threading.Event()

            def watched(run, index):
                def part(features):
                    decoded_before_part.append(service.metrics.model_calls("decoder"))
                    if index == 0:  # holds the first graph until the click is queued
                        encoding.set()
                        deadline = time.monotonic() + 5
                        while service.queue_depth < 2 and time.monotonic() < deadline:
                            time.sleep(0.005)
                    return run(features)

                return part

            encoder.runs = [watched(run, index) for index, run in enumerate(encoder.runs)]
            before = service.metrics.model_calls("decoder")
            files = {"image": ("new.png", encode(make_image(seed=4242)))}
            embed = asyncio.ensure_future(client.post("/embed", files=files))
            while not encoding.is_set():
                await asyncio.sleep(0.005)
            click = await client.post(
                "/segment", json={"embedding_id": embedding_id, "points": [[9, 9]]}
            )
            embedded = await embed
    assert (click.status_code, embedded.status_code) == (200, 200)
    assert embedded.json()["cached"] is False
    # The click, sent during the encoder's first graph, was decoded before its second.
    assert decoded_before_part == [before, before + 1, before + 1, before + 1]


async def test_masks_and_edges_decode_at_most_max_step_points_per_step(
    app, client, embedding_id, monkeypatch
):
    """Waiting clicks run between the steps of a task: a step decodes a few grid points."""
    limit = app.state.settings.max_step_points
    sizes: list[int] = []
    decode_points = Predictor.decode_points

    def recorded(self, embedding, points, *args, **kwargs):
        sizes.append(len(points))
        return decode_points(self, embedding, points, *args, **kwargs)

    monkeypatch.setattr(Predictor, "decode_points", recorded)
    body = {"embedding_id": embedding_id, "points_per_side": 6, "points_per_batch": 32}
    assert (await client.post("/masks", json=body)).status_code == 200
    masks_sizes, sizes[:] = list(sizes), []
    assert (await client.post("/edges", json={**body, "format": "npy"})).status_code == 200
    assert sum(masks_sizes) == 36 and max(masks_sizes) == limit < 32
    assert sum(sizes) == 36 and max(sizes) == limit
