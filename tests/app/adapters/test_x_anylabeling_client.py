"""X-AnyLabeling's own client code (the ``x-anylabeling-cvhub`` package, installed in a virtual
environment of its own: its Qt and OpenCV builds stay out of ours) gets the service's masks
from a real ``repvit-sam serve``. It uses the venv named by ``REPVIT_SAM_TEST_X_ANYLABELING``
(its python; .ci/tool-venvs.sh makes one for CI) or installs one: about a minute, most of it
the install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from test_x_anylabeling import filled, iou

from repvit_sam_client import decode_rle
from tests.process_helpers import ServeProcess

CLIENT = Path(__file__).with_name("x_anylabeling_client.py")
PACKAGE = "x-anylabeling-cvhub>=4.2,<5"


@pytest.fixture(scope="module")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a venv holding X-AnyLabeling: the given one, else a fresh one (skips
    where pip cannot get it)."""
    given = os.environ.get("REPVIT_SAM_TEST_X_ANYLABELING")
    if given:
        return Path(given)
    venv = tmp_path_factory.mktemp("x-anylabeling") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", PACKAGE],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if install.returncode != 0:
        pytest.skip(f"could not install {PACKAGE}: {install.stderr[-2000:]}")
    return python


def run_client(python: Path, base: str, key: str, image: Path, home: Path) -> dict:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(home)}
    done = subprocess.run(
        [str(python), str(CLIENT), base, key, str(image), "60", "40"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_x_anylabeling_client_gets_the_native_mask(
    client_python: Path, checkpoint: Path, png: bytes, tmp_path: Path
) -> None:
    image = tmp_path / "cell.png"
    image.write_bytes(png)
    server = ServeProcess(checkpoint, tmp_path / "serve.log", REPVIT_SAM_API_KEY="k3y")
    server.start()
    try:
        server.wait_ready()
        answer = run_client(client_python, f"{server.base}/x-anylabeling", "k3y", image, tmp_path)
        assert list(answer["models"]) == ["repvit_sam"] and answer["messages"] == []
        headers = {"X-API-Key": "k3y"}
        embedded = httpx.post(
            f"{server.base}/embed", files={"image": ("a.png", png)}, headers=headers
        )
        body = {"embedding_id": embedded.json()["embedding_id"], "points": [[60, 40]]}
        native = httpx.post(f"{server.base}/segment", json=body, headers=headers).json()
        mask = decode_rle(native["masks"][0]["segmentation"])
        assert mask.any() and answer["shapes"]
        union = np.zeros_like(mask)
        for shape in answer["shapes"]:
            assert shape["label"] == "AUTOLABEL_OBJECT" and shape["shape_type"] == "polygon"
            assert shape["score"] == pytest.approx(
                min(max(native["masks"][0]["score"], 0), 1), abs=1e-5
            )
            union |= filled(shape["points"], *mask.shape)
        assert iou(union, mask) > 0.8
        refused = run_client(
            client_python, f"{server.base}/x-anylabeling", "wrong", image, tmp_path
        )
        assert refused["shapes"] == [] and "401" in refused["messages"][0]
    finally:
        server.stop()
