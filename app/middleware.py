"""ASGI middleware of the service: request metrics and body limits, and cancellation of the
handlers whose client went away."""

from __future__ import annotations

import asyncio
import contextlib
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import payload_too_large
from .metrics import Metrics

# Room for the multipart framing and JSON fields around an upload of max_upload_bytes.
BODY_OVERHEAD = 1 << 20


class _BodyTooLarge(Exception):
    """Raised into the app from ``receive`` once a body outgrows the limit."""


class ObserveMiddleware:
    """Counts and times every request by route and status; refuses oversized bodies.

    A ``Content-Length`` over the limit is refused before anything is read. A body without one
    (chunked) is counted as it arrives and cut off at the limit: whatever the app makes of the
    cut body is replaced by the same 413.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # 499 (nginx's "client closed request") unless an answer starts or the app fails.
        status = 499
        received, too_large, responded = 0, False, False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def observed_send(message: Message) -> None:
            nonlocal status, responded
            if too_large and not responded:
                return  # the app's answer to a cut body; the 413 goes instead
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
            await send(message)

        try:
            length = dict(scope["headers"]).get(b"content-length", b"0")
            refuse = length.isdigit() and int(length) > self.max_body_bytes
            if not refuse:
                try:
                    await self.app(scope, limited_receive, observed_send)
                except Exception:
                    if not too_large or responded:
                        status = status if responded else 500
                        raise
                refuse = too_large and not responded
            if refuse:
                too_large = False
                await payload_too_large(self.max_body_bytes)(scope, receive, observed_send)
        finally:
            route = scope.get("route")
            self.metrics.observe_request(
                scope["method"],
                getattr(route, "path", "unmatched"),
                status,
                time.perf_counter() - started,
                getattr(route, "protocol", None),
            )


class CancelOnDisconnectMiddleware:
    """Cancels a request's handler when its client disconnects before the answer starts.

    Starlette runs a handler to its end even when nobody waits for the answer: 40 clicks whose
    clients gave up would still queue 40 decoder calls. Once the handler has read its whole body,
    this middleware listens for ``http.disconnect``; if it comes before the response starts, the
    handler's task is cancelled, which drops its queued model calls and stops a running task at
    its next step (``ModelScheduler``). The handler itself still sees the disconnect if it asks.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_read = asyncio.Event()
        disconnected = asyncio.Event()
        started = False

        async def tracked_receive() -> Message:
            if body_read.is_set():
                await disconnected.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected.set()
            elif not message.get("more_body", False):
                body_read.set()
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        handler = asyncio.ensure_future(self.app(scope, tracked_receive, tracked_send))
        watcher = asyncio.ensure_future(self._watch(receive, body_read, disconnected))
        try:
            done, _ = await asyncio.wait({handler, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if handler not in done and disconnected.is_set() and not started:
                handler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await handler
        finally:
            watcher.cancel()
            handler.cancel()

    @staticmethod
    async def _watch(
        receive: Receive, body_read: asyncio.Event, disconnected: asyncio.Event
    ) -> None:
        await body_read.wait()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected.set()
                return
