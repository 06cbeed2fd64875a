"""``repvit-sam serve`` as a real process on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
import torch
from pycocotools import mask as mask_utils
from service_helpers import TEST_IMAGE_SIZE, TEST_VARIANT, encode, make_image

from tests.process_helpers import ServeProcess, free_port


def test_serve_command_runs_the_service(checkpoint, tmp_path):
    server = ServeProcess(
        checkpoint, tmp_path / "serve.log", REPVIT_SAM_API_KEY="k", REPVIT_SAM_BACKEND="auto"
    )
    # The checkpoint and port come from the command line here, not the environment.
    del server.env["REPVIT_SAM_CHECKPOINT"], server.env["REPVIT_SAM_PORT"]
    server.start("--port", str(server.port), "--checkpoint", str(checkpoint))
    try:
        server.wait_ready(timeout=60)
        with httpx.Client(base_url=server.base, headers={"X-API-Key": "k"}, timeout=30) as http:
            embedded = http.post("/embed", files={"image": ("a.png", encode(make_image()))})
            assert embedded.status_code == 200, embedded.text
            body = {"embedding_id": embedded.json()["embedding_id"], "boxes": [[10, 10, 90, 80]]}
            answer = http.post("/segment", json=body).json()
            rle = answer["masks"][0]["segmentation"]
            decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
            assert decoded.shape == (120, 160)
            assert int(decoded.sum()) == answer["masks"][0]["area"]
            assert http.post("/segment", json={**body, "boxes": [[5, 5, 1, 1]]}).status_code == 422
            assert 'route="/segment",status="422"' in http.get("/metrics").text
    finally:
        server.stop()


BAD_SETTINGS = {
    # case: (extra environment, expected words of the one error line)
    "missing": ({}, "checkpoint not found"),
    "other_variant": ({"REPVIT_SAM_VARIANT": "m1_0"}, "pass variant='m0_9'"),
    "unknown_variant": ({"REPVIT_SAM_VARIANT": "m9_9"}, "unknown RepViT variant 'm9_9'"),
    "absent_device": ({"REPVIT_SAM_DEVICE": "cuda"}, "CUDA is not available"),
    "port": ({"REPVIT_SAM_PORT": "abc"}, "REPVIT_SAM_PORT: "),
    "cache_url": ({"REPVIT_SAM_CACHE_URL": "http://x"}, "REPVIT_SAM_CACHE_URL: "),
    "log_level": ({"REPVIT_SAM_LOG_LEVEL": "loud"}, "REPVIT_SAM_LOG_LEVEL: unknown level"),
    "precision": (
        {"REPVIT_SAM_PRECISION": "fp16"},
        "REPVIT_SAM_PRECISION: precision 'fp16' needs a CUDA device",
    ),
    "encoder_parts": (
        {"REPVIT_SAM_ENCODER_PARTS": "28"},
        "REPVIT_SAM_ENCODER_PARTS: parts must be between 1 and 27 (the layers), got 28",
    ),
    "calibration": (
        {"REPVIT_SAM_CALIBRATION_IMAGES": "."},
        "REPVIT_SAM_CALIBRATION_IMAGES only applies to REPVIT_SAM_PRECISION=int8",
    ),
}


@pytest.mark.parametrize("case", BAD_SETTINGS)
def test_serve_fails_fast_with_one_clear_line_on_bad_settings(checkpoint, tmp_path, case):
    if case == "absent_device" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    extra, expected = BAD_SETTINGS[case]
    path = tmp_path / "absent.pt" if case == "missing" else checkpoint
    env = {
        **os.environ,
        "REPVIT_SAM_IMAGE_SIZE": str(TEST_IMAGE_SIZE),
        "REPVIT_SAM_VARIANT": TEST_VARIANT,
        "REPVIT_SAM_CHECKPOINT": str(path),
        **extra,
    }
    command = [sys.executable, "-m", "repvit_sam.cli", "serve"]
    if case != "port":
        command += ["--port", str(free_port())]
    # The timeout only stops a hang, it times nothing: failing fast is refusing to start.
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Uvicorn running" not in done.stderr  # refused before the server started
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("repvit-sam serve: error: ")
    assert expected in line, line
    if case in ("missing", "other_variant"):
        assert str(path) in line


def test_serve_without_weights_offline_says_what_to_do_in_one_line(tmp_path):
    home = tmp_path / "home"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("REPVIT_SAM_") or key == "REPVIT_SAM_HOME"
    }
    # A mirror on a loopback port nobody listens on: the download fails at once, as offline.
    mirror = f"http://127.0.0.1:{free_port()}/repvit_sam.pt"
    env.update(REPVIT_SAM_HOME=str(home), REPVIT_SAM_WEIGHTS_URL=mirror)
    command = [sys.executable, "-m", "repvit_sam.cli", "serve", "--port", str(free_port())]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Uvicorn running" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("repvit-sam serve: error: download of " + mirror)
    for advice in ("--checkpoint PATH", "REPVIT_SAM_CHECKPOINT=PATH", "REPVIT_SAM_WEIGHTS_URL"):
        assert advice in line
    assert str(home / "repvit_sam.pt") in line


def test_serve_refuses_a_backend_whose_runtime_is_missing(checkpoint, monkeypatch):
    from repvit_sam import InvalidInputError, runtimes
    from repvit_sam_server.cli import check_serve_settings

    real_find_spec = runtimes.importlib.util.find_spec
    monkeypatch.setattr(
        runtimes.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "onnx" else real_find_spec(name, *args),
    )
    monkeypatch.setenv("REPVIT_SAM_CHECKPOINT", str(checkpoint))
    monkeypatch.setenv("REPVIT_SAM_VARIANT", TEST_VARIANT)
    monkeypatch.setenv("REPVIT_SAM_IMAGE_SIZE", str(TEST_IMAGE_SIZE))
    monkeypatch.setenv("REPVIT_SAM_BACKEND", "openvino")
    with pytest.raises(InvalidInputError, match=r"REPVIT_SAM_BACKEND: .*needs onnx.*\[openvino\]"):
        check_serve_settings()
    # auto passes over a backend it cannot run instead of failing at load time.
    monkeypatch.setenv("REPVIT_SAM_BACKEND", "auto")
    assert check_serve_settings().backend == "auto"
    from repvit_sam.backends import resolve_backend

    assert resolve_backend("auto", torch.device("cpu")) == "torch"


def test_sigterm_drains_answers_every_request_and_exits_0(checkpoint, tmp_path):
    """Twelve uploads in flight at SIGTERM: each is answered 200, or 503 with Retry-After for
    those that could not finish within the shutdown timeout (a balancer retries them); never a
    500, and the process exits 0."""
    import threading

    from service_helpers import encode

    server = ServeProcess(
        checkpoint, tmp_path / "serve.log", REPVIT_SAM_SHUTDOWN_TIMEOUT_SECONDS="3"
    )
    server.start()
    try:
        server.wait_ready()
        answers: list[httpx.Response | Exception] = []

        def upload(seed: int) -> None:
            image = make_image()
            image[seed % 100, :, 0] = seed  # twelve distinct images: twelve encoder calls
            try:
                answers.append(
                    httpx.post(
                        f"{server.base}/embed",
                        files={"image": ("a.png", encode(image))},
                        timeout=30,
                    )
                )
            except httpx.HTTPError as err:
                answers.append(err)

        encoded_before = _encoder_calls_and_queue(server.base)[0]
        threads = [threading.Thread(target=upload, args=(seed,)) for seed in range(12)]
        for thread in threads:
            thread.start()
        # SIGTERM only once every upload reached the model (queued, running or done): one still
        # connecting would be refused by the draining server, which is not what this tests.
        deadline = time.monotonic() + 30
        while True:
            encoded, queued = _encoder_calls_and_queue(server.base)
            if encoded - encoded_before + queued >= len(threads):
                break
            assert time.monotonic() < deadline, f"{encoded - encoded_before + queued} of 12 arrived"
            time.sleep(0.01)
        server.sigterm()
        for thread in threads:
            thread.join(timeout=60)
        assert server.wait(timeout=30) == 0, server.output()
    finally:
        server.stop()
    statuses = [a.status_code for a in answers if isinstance(a, httpx.Response)]
    assert len(statuses) == 12, answers
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["Retry-After"] and "shutting down" in answer.json()["detail"]


def _encoder_calls_and_queue(base: str) -> tuple[int, int]:
    """The service's finished encoder calls and its model queue depth, from /metrics."""
    import re

    text = httpx.get(f"{base}/metrics").text
    encoded = re.search(r'^repvit_sam_model_seconds_count\{stage="encoder"\} (\d+)', text, re.M)
    queued = re.search(r"^repvit_sam_queue_depth (\d+)$", text, re.M)
    assert queued is not None, text
    return (int(encoded.group(1)) if encoded else 0), int(queued.group(1))
