"""``repvit-sam serve``: the service's command, registered through the ``repvit_sam.cli``
entry-point group. Everything a start needs is checked before uvicorn starts, so that a bad
setting is one line and exit status 2, never a server that answers 503 forever."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from repvit_sam.cli.common import add_command
from repvit_sam.errors import InvalidInputError
from repvit_sam.runtimes import BACKENDS, PRECISIONS

# Flags that override the REPVIT_SAM_<NAME> setting of the same name.
_FLAGS = (
    "host",
    "port",
    "checkpoint",
    "variant",
    "device",
    "backend",
    "precision",
    "calibration_images",
)


def register(sub: argparse._SubParsersAction) -> None:
    serve = add_command(
        sub,
        "serve",
        run_serve,
        help="run the HTTP service (pip install 'repvit-sam[server]')",
        description="Runs the HTTP service with uvicorn. Options override REPVIT_SAM_* settings; "
        "every other setting is a REPVIT_SAM_* variable (see the README).",
    )
    serve.add_argument("--host", help="address to bind (REPVIT_SAM_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (REPVIT_SAM_PORT, default 8000)")
    serve.add_argument(
        "--checkpoint",
        type=Path,
        help="checkpoint (REPVIT_SAM_CHECKPOINT; default: the official weights, downloaded "
        "once before the server starts, from REPVIT_SAM_WEIGHTS_URL where set)",
    )
    serve.add_argument("--variant", help="encoder variant of the checkpoint (default m2_3)")
    serve.add_argument("--device", help="cpu, cuda, cuda:1, ... (default cpu)")
    serve.add_argument(
        "--backend", choices=BACKENDS, help="image encoder runtime (REPVIT_SAM_BACKEND; auto)"
    )
    serve.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="encoder precision (REPVIT_SAM_PRECISION; fp32, exact): int8 on the CPU, bf16 on "
        "CUDA or a CPU with native bf16, fp16 on CUDA; faster, not exact",
    )
    serve.add_argument(
        "--calibration-images",
        type=Path,
        metavar="DIR",
        help="with --precision int8: images to calibrate on (REPVIT_SAM_CALIBRATION_IMAGES; "
        "default scikit-image's sample photos)",
    )


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    # The service reads its settings from the environment, the flags included.
    for name in _FLAGS:
        if getattr(args, name) is not None:
            os.environ[f"REPVIT_SAM_{name.upper()}"] = str(getattr(args, name))
    settings = check_serve_settings()
    # A server logs its lifecycle (model loaded, cache state) unless told to be quieter.
    logging.getLogger().setLevel(os.environ.get("REPVIT_SAM_LOG_LEVEL", "INFO").upper())
    config = uvicorn.Config(
        f"{__package__}.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
        # Direct exposure without a proxy: request heads bounded in size (431) and time, idle
        # keep-alive connections closed, requests beyond the connection bound answered 503.
        http=limited_h11_protocol(settings.max_header_bytes, settings.header_timeout_seconds),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=5,
        limit_concurrency=settings.max_connections,
    )
    DrainingServer(config).run()
    return 0


class DrainingServer:
    """uvicorn's server, draining the service on SIGTERM and exiting 0 after it.

    On the first SIGTERM or SIGINT, before uvicorn stops accepting connections, the service
    refuses the queued model calls that cannot finish within ``SHUTDOWN_TIMEOUT_SECONDS`` (less
    a second for the answers to go out) with 503 and Retry-After, so that a load balancer
    retries them elsewhere, and the rest finish; uvicorn then waits for them and exits. A
    shutdown asked for is a success: the process exits 0, not by the signal (143).
    """

    def __init__(self, config: Any) -> None:
        import uvicorn

        class _Server(uvicorn.Server):
            def handle_exit(server, sig: int, frame: Any) -> None:
                if not server.should_exit:
                    _drain(server.config)
                super().handle_exit(sig, frame)
                # uvicorn re-raises the captured signal once it has shut down.
                server._captured_signals.clear()

        self.server = _Server(config)

    def run(self) -> None:
        self.server.run()


def limited_h11_protocol(max_head_bytes: int, head_timeout_seconds: float) -> type:
    """uvicorn's h11 protocol with the request head bounded in size and in time.

    A head (request line and headers) over ``max_head_bytes`` is answered 431 and the
    connection closed. h11's own bound (``h11_max_incomplete_event_size``, kept as a backstop)
    only applies to a head still incomplete after a read, so a 64 KiB head that arrives in one
    read passes it whatever the bound. A connection whose head has not fully arrived
    ``head_timeout_seconds`` after the connection opened, or after the head's first byte on a
    kept-alive connection, is closed: uvicorn has no such timeout, and a connection that never
    sends a request, or sends its head a byte at a time (slowloris), stays open for ever and
    counts against ``limit_concurrency``, so that a few hundred of them make every request a 503.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    too_large = b"request head is larger than max_header_bytes=%d" % max_head_bytes
    refusal = (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n"
        b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n\r\n%s"
    ) % (len(too_large), too_large)

    class LimitedH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            self._head_timer: Any = None
            self._head_seen, self._head_tail = 0, b""
            super().connection_made(transport)
            self._arm_head_timer()

        def data_received(self, data: bytes) -> None:
            if self.conn.their_state is h11.IDLE and self._head_too_large(data):
                self.transport.write(refusal)
                self.transport.close()
                return
            super().data_received(data)
            if not self._awaiting_head():
                self._cancel_head_timer()
            elif self._head_timer is None:  # a kept-alive connection's next head begins
                self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def _head_too_large(self, data: bytes) -> bool:
            """Counts the head's bytes up to its blank line, across reads."""
            window = self._head_tail + data
            end = window.find(b"\r\n\r\n")
            if end < 0:
                self._head_seen += len(data)
                self._head_tail = window[-3:]
                return self._head_seen > max_head_bytes
            size = self._head_seen + end + 4 - len(self._head_tail)
            self._head_seen, self._head_tail = 0, b""
            return size > max_head_bytes

        def _awaiting_head(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm_head_timer(self) -> None:
            self._head_timer = self.loop.call_later(head_timeout_seconds, self._head_late)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_late(self) -> None:
            self._head_timer = None
            if self._awaiting_head() and not self.transport.is_closing():
                self.transport.close()

    return LimitedH11Protocol


def _drain(config: Any) -> None:
    """Starts the app's drain from a signal handler: on the event loop, where it belongs."""
    import asyncio

    app = config.loaded_app
    while app is not None and not hasattr(app, "state"):
        app = getattr(app, "app", None)
    if app is None:
        return
    seconds = max(0.0, (config.timeout_graceful_shutdown or 30.0) - 1.0)
    asyncio.get_event_loop().call_soon_threadsafe(app.state.service.drain, seconds)


def check_serve_settings() -> Any:
    """The service's settings from the ``REPVIT_SAM_*`` environment, with what a start needs:
    valid values, a device of this machine, the backend's runtime, and the checkpoint (a file
    of ``REPVIT_SAM_VARIANT``, or the official weights, downloaded here where absent).

    Raises:
        InvalidInputError: A setting is invalid or its runtime is missing (the message names the
            variable and what to install).
        CheckpointError: The file is missing, unreadable or not of ``REPVIT_SAM_VARIANT``.
        WeightsDownloadError: The official weights are not cached and cannot be downloaded (the
            message says how to do without).
    """
    from pydantic import ValidationError

    from repvit_sam.assembly import resolve_variant
    from repvit_sam.backends import check_precision, resolve_backend
    from repvit_sam.build import build_repvit_sam, resolve_device
    from repvit_sam.modeling import check_parts, layer_count
    from repvit_sam.weights import download_weights

    from .settings import Settings

    try:
        settings = Settings()
    except ValidationError as err:
        problems = "; ".join(
            f"REPVIT_SAM_{'_'.join(str(part) for part in e['loc']).upper()}: {e['msg']}"
            for e in err.errors()
        )
        raise InvalidInputError(problems) from None
    level = os.environ.get("REPVIT_SAM_LOG_LEVEL", "INFO").upper()
    if not isinstance(logging.getLevelName(level), int):
        raise InvalidInputError(f"REPVIT_SAM_LOG_LEVEL: unknown level {level!r}")
    device = resolve_device(settings.device)
    try:
        backend = resolve_backend(settings.backend, device, settings.precision)
    except InvalidInputError as err:
        raise InvalidInputError(f"REPVIT_SAM_BACKEND: {err}") from None
    try:
        check_precision(settings.precision, backend, device)
    except InvalidInputError as err:
        raise InvalidInputError(f"REPVIT_SAM_PRECISION: {err}") from None
    try:
        check_parts(settings.encoder_parts, layer_count(resolve_variant(settings.variant)))
    except ValueError as err:
        raise InvalidInputError(f"REPVIT_SAM_ENCODER_PARTS: {err}") from None
    folder = settings.calibration_images
    if folder is not None and (settings.precision != "int8" or not folder.is_dir()):
        raise InvalidInputError(
            f"REPVIT_SAM_CALIBRATION_IMAGES: {folder} is not a folder"
            if settings.precision == "int8"
            else "REPVIT_SAM_CALIBRATION_IMAGES only applies to REPVIT_SAM_PRECISION=int8"
        )
    if settings.checkpoint is not None:
        build_repvit_sam(
            settings.checkpoint, variant=settings.variant, image_size=settings.image_size
        )
    else:
        download_weights()
    return settings
