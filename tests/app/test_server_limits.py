"""``repvit-sam serve`` exposed directly (no proxy in front): request heads bounded in size
and in time, connections bounded in number. Raw sockets against the real process."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.process_helpers import ServeProcess

HEADER_BYTES = 8192
HEADER_TIMEOUT = 2.0
# Generous: the bound is what is checked (a slow client cannot hold a connection for ever),
# not the timeout's precision on a loaded machine.
CLOSED_WITHIN = HEADER_TIMEOUT + 28.0


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory) -> Iterator[ServeProcess]:
    process = ServeProcess(
        checkpoint,
        tmp_path_factory.mktemp("limits") / "serve.log",
        REPVIT_SAM_MAX_HEADER_BYTES=str(HEADER_BYTES),
        REPVIT_SAM_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        REPVIT_SAM_WARMUP="false",
    )
    with process.ready():
        yield process


def _exchange(port: int, data: bytes) -> bytes:
    """Sends ``data`` on a new connection; everything the server answered before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=CLOSED_WITHIN) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(1 << 16):
                chunks.append(chunk)
        return b"".join(chunks)


def _refused(answer: bytes) -> bool:
    """A 431 answer, or the connection closed before one could be read (the server closes
    while the client still sends)."""
    return answer == b"" or answer.startswith(b"HTTP/1.1 431 ")


def _healthy(server: ServeProcess) -> bool:
    return httpx.get(f"{server.base}/healthz", timeout=30).status_code == 200


def test_a_head_within_the_bound_is_served(server):
    headers = b"".join(b"X-Field-%d: %s\r\n" % (i, b"v" * 60) for i in range(50))  # ~4 KB
    answer = _exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


@pytest.mark.parametrize("size", [HEADER_BYTES, 60 << 10, 1 << 20])
def test_an_oversized_head_is_refused_431(server, size):
    """Over the bound by a little (one read) or a lot (many reads)."""
    head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
    answer = _exchange(server.port, head)
    assert _refused(answer), answer[:200]
    if size == HEADER_BYTES:  # sent in one write, read before the server closes
        assert answer.startswith(b"HTTP/1.1 431 ") and b"max_header_bytes" in answer
    assert _healthy(server)


def test_twenty_thousand_headers_are_refused(server):
    headers = b"".join(b"X-%d: 1\r\n" % i for i in range(20_000))
    assert _refused(_exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + headers))
    assert _healthy(server)


def test_a_slowloris_head_is_cut_off(server):
    """A head sent a byte at a time, never finished: the server closes the connection."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=1) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        closed = False
        while not closed and time.monotonic() - started < CLOSED_WITHIN:
            try:
                sock.sendall(b"X")
                closed = sock.recv(1) == b""
            except TimeoutError:
                continue  # nothing to read yet: the connection is still open
            except (BrokenPipeError, ConnectionResetError):
                closed = True
    assert closed, f"the connection was still open after {CLOSED_WITHIN:g} s"
    assert _healthy(server)


def test_a_silent_connection_is_closed(server):
    assert _exchange(server.port, b"") == b""


def test_a_keep_alive_connections_next_head_is_timed_too(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=CLOSED_WITHIN) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\n")
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(1 << 16):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1 ") == 1, answer


def test_requests_beyond_max_connections_get_503_until_connections_close(checkpoint, tmp_path):
    limit = 4
    server = ServeProcess(
        checkpoint,
        tmp_path / "serve.log",
        REPVIT_SAM_MAX_CONNECTIONS=str(limit),
        REPVIT_SAM_HEADER_TIMEOUT_SECONDS="120",  # the idle connections stay for the test
        REPVIT_SAM_WARMUP="false",
    )
    server.start()
    try:
        server.wait_ready()
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(limit)]
        try:
            for sock in idle:
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # a head begun, never finished
            time.sleep(0.5)
            refused = httpx.get(f"{server.base}/healthz", timeout=30)
            assert refused.status_code == 503, refused.text
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + 30
        while httpx.get(f"{server.base}/healthz", timeout=30).status_code != 200:
            assert time.monotonic() < deadline, "closed connections still counted after 30 s"
            time.sleep(0.1)
    finally:
        server.stop()
