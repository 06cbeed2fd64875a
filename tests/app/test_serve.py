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
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert time.monotonic() - started < 60
    assert "Uvicorn running" not in done.stderr  # refused before the server started
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("repvit-sam serve: error: ")
    assert expected in line, line
    if case in ("missing", "other_variant"):
        assert str(path) in line
