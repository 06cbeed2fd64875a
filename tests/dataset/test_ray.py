"""Dataset jobs on a real Ray cluster on loopback: a head and a second node, each its own
``ray start`` process with one CPU. The job's store equals the in-process run's bit for bit,
also when a worker is killed mid-job."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from repvit_sam.dataset import EmbeddingStore
from tests.dataset.conftest import write_images
from tests.process_helpers import free_port

pytestmark = pytest.mark.slow

RAY = shutil.which("ray", path=str(Path(sys.executable).parent))
if RAY is None:
    pytest.skip(
        "Ray is not installed: these tests need `pip install -e '.[ray]'` (.ci/run installs it)",
        allow_module_level=True,
    )

# One thread per encoder, here and in Ray's workers (which get OMP_NUM_THREADS = their CPUs):
# the same kernels sum in the same order, so the embeddings are equal bit for bit.
ENVIRONMENT = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
}
NODE_OPTIONS = ["--num-cpus", "1", "--object-store-memory", str(100 << 20), "--disable-usage-stats"]


def _ray(*args: str) -> None:
    subprocess.run([RAY, *args], env=ENVIRONMENT, check=True, capture_output=True, timeout=180)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = ["start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port)]
    _ray(*head, "--include-dashboard", "false", *NODE_OPTIONS)
    try:
        _ray("start", "--address", address, "--node-ip-address", "127.0.0.1", *NODE_OPTIONS)
        yield address
    finally:
        _ray("stop", "--force")


def _embed_dataset(images: Path, store: Path, options: list[str], *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "repvit_sam.cli", "embed-dataset", str(images)]
    return subprocess.Popen(
        [*command, "--store", str(store), *options, *extra],
        env=ENVIRONMENT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen, timeout: float = 600) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, out + err[-3000:]
    return out


def _values(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in store.rglob("*.rvsam")}


def _ray_workers() -> list[int]:
    """Pids of the job's actors (their process titles name the worker class)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"ray::" in title and b"_Worker" in title:
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    write_images(folder, 24)
    return folder


@pytest.fixture(scope="module")
def in_process_store(dataset, tmp_path_factory, small_checkpoint) -> Path:
    store = tmp_path_factory.mktemp("in-process")
    options = _options(small_checkpoint)
    _finish(_embed_dataset(dataset, store, options))
    return store


def _options(checkpoint: Path) -> list[str]:
    return [
        "--checkpoint", str(checkpoint), "--variant", "m0_9", "--image-size", "256",
        "--backend", "torch",
    ]  # fmt: skip


def test_the_ray_job_stores_what_the_in_process_job_stores(
    cluster, dataset, in_process_store, small_checkpoint, tmp_path
):
    store = tmp_path / "store"
    options = [*_options(small_checkpoint), "--ray", cluster, "--workers", "2"]
    out = _finish(_embed_dataset(dataset, store, options, "--batch-size", "4"))
    assert "24 images: 24 computed, 0 already done, 0 failed" in out
    assert _values(store) == _values(in_process_store)
    assert (
        EmbeddingStore(str(store), "").manifest()
        == EmbeddingStore(str(in_process_store), "").manifest()
    )


def test_a_killed_worker_loses_nothing_and_stores_each_image_once(
    cluster, dataset, in_process_store, small_checkpoint, tmp_path
):
    store = tmp_path / "store"
    options = [*_options(small_checkpoint), "--ray", cluster, "--workers", "2"]
    job = _embed_dataset(dataset, store, options, "--batch-size", "2")
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and job.poll() is None and time.monotonic() < deadline:
        workers = _ray_workers()
        if workers and _values(store):  # mid-job: a worker has written, the job runs on
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    assert killed is not None, "the job ended before a worker could be killed mid-job"
    stored_when_killed = len(_values(store))
    out = _finish(job)
    assert stored_when_killed < 24
    assert "24 images:" in out and "0 failed" in out
    assert _values(store) == _values(in_process_store)  # each image once, bit for bit
    assert not [p for p in store.rglob("*") if ".tmp-" in p.name]
    assert len(EmbeddingStore(str(store), "").manifest()) == 24
