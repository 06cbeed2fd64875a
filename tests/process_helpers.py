"""Real processes for the service tests: Debian's ``redis-server`` and ``repvit-sam serve``.

Shared by ``tests/app`` and ``tests/demo``: import it as ``tests.process_helpers`` (the
repository root is on ``sys.path`` through pytest's ``pythonpath``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

# The small random-weight model every served test runs (fast on CPU).
TEST_VARIANT = "m0_9"
TEST_IMAGE_SIZE = 256


def save_sharp_test_checkpoint(path: Path) -> Path:
    """Writes the small random test model at ``path`` with its mask logits sharpened (x20), so
    that masks have edges and stability scores vary, and returns ``path``."""
    import torch

    from repvit_sam import build_repvit_sam

    torch.manual_seed(0)
    model = build_repvit_sam(variant=TEST_VARIANT, image_size=TEST_IMAGE_SIZE)
    with torch.no_grad():
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(20)
    torch.save(model.state_dict(), path)
    return path


REDIS_SERVER = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None,
    reason="redis-server not installed (apt-get install -y redis-server; .ci/run does)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen, timeout: float = 15) -> int:
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


class RedisServer:
    """A throw-away ``redis-server`` on a free loopback port, no persistence, LRU-bounded.

    ``stop()`` and ``start()`` again keep the port: what a Redis restart looks like to clients."""

    def __init__(self, folder: Path, maxmemory: str = "64mb") -> None:
        self.folder = folder
        self.maxmemory = maxmemory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        command += ["--maxmemory", self.maxmemory, "--maxmemory-policy", "allkeys-lru"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert self.process.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not answer in 10 s"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


class TcpProxy:
    """Forwards a free loopback port to ``target_port``; ``cut()`` makes a network partition.

    While cut, every connection is dropped and new ones are closed at once, so nothing sent
    meanwhile reaches the target, which keeps its data (unlike a restart); ``restore()`` ends it.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._linked = True
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cut(self) -> None:
        with self._lock:
            self._linked = False
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _close(sock)

    def restore(self) -> None:
        with self._lock:
            self._linked = True

    def close(self) -> None:
        self.cut()
        _close(self._listener)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                linked = self._linked
            if not linked:
                _close(client)
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while (data := source.recv(1 << 16)) and self._linked:
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class ServeProcess:
    """``repvit-sam serve`` of the small test model, as a real process on a free port.

    Args:
        checkpoint: The small random-weight checkpoint.
        log: File that receives the process's output.
        env: Extra ``REPVIT_SAM_*`` (or other) environment variables.
    """

    def __init__(self, checkpoint: Path, log: Path, **env: str) -> None:
        self.port = free_port()
        self.log = log
        self.env = {
            **os.environ,
            "REPVIT_SAM_VARIANT": TEST_VARIANT,
            "REPVIT_SAM_IMAGE_SIZE": str(TEST_IMAGE_SIZE),
            "REPVIT_SAM_BACKEND": "torch",
            "REPVIT_SAM_CHECKPOINT": str(checkpoint),
            "REPVIT_SAM_PORT": str(self.port),
            "OMP_NUM_THREADS": "1",  # several servers share the CI machine's cores
            **env,
        }
        self.process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(
        self, *options: str, command: list[str] | None = None, cwd: Path | None = None
    ) -> None:
        """Starts the process: ``repvit-sam serve`` with command-line ``options``, or another
        ``command`` that starts the service (a shell line from the README)."""
        command = command or [sys.executable, "-m", "repvit_sam.cli", "serve", *options]
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd
            )

    @contextlib.contextmanager
    def ready(self, *options: str, timeout: float = 90) -> Iterator[ServeProcess]:
        """Within the block, the service started (``start(*options)``) and ready; stopped after."""
        self.start(*options)
        try:
            self.wait_ready(timeout)
            yield self
        finally:
            self.stop()

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None and self.process.poll() is None, self.output()
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"serve did not become ready in {timeout:g} s:\n{self.output()}")
            time.sleep(0.2)

    def sigterm(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> int | None:
        if self.process is None:
            return None
        code = _stop(self.process)
        self.process = None
        return code

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""
