"""End to end with a real Label Studio (sqlite, on loopback): a project with the SAM labelling
config, a task with an uploaded image, our ``/label-studio`` URL connected as its interactive ML
backend, and an interactive prediction asked through Label Studio's own API.

Label Studio pins older numpy and OpenCV than this project's environment has (1.23.2: numpy
2.2, OpenCV 4.12; here 2.4 and 5.0) and brings Django with some 60 packages, so it lives in a
virtual environment of its own, named by ``REPVIT_SAM_TEST_LABEL_STUDIO``
(the ``label-studio`` executable) or found on ``PATH``; without one the test is skipped::

    python3 -m venv /opt/label-studio && /opt/label-studio/bin/pip install label-studio==1.23.2
    export REPVIT_SAM_TEST_LABEL_STUDIO=/opt/label-studio/bin/label-studio
    pytest -m slow tests/app/adapters

CI makes that environment with ``.ci/tool-venvs.sh`` and sets the variable (``.ci/run``).
Measured on the 2-core development machine under load: installing took 1.5 to 6.5 minutes
(with and without pip's cache), the first start (its database migrations) 0.5 to 4 minutes;
this test took 0.7 to 4.1 minutes in all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from label_studio_converter.brush import decode_rle
from label_studio_helpers import BRUSH_CONFIG, click
from service_helpers import encode, make_image

from tests.process_helpers import ServeProcess, free_port

LABEL_STUDIO = os.environ.get("REPVIT_SAM_TEST_LABEL_STUDIO") or shutil.which("label-studio")
TOKEN = "0123456789abcdef0123456789abcdef01234567"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        LABEL_STUDIO is None,
        reason="no label-studio executable (set REPVIT_SAM_TEST_LABEL_STUDIO; see the docstring)",
    ),
]


@contextlib.contextmanager
def label_studio(data: Path, log: Path) -> Iterator[str]:
    """A Label Studio on a free loopback port with one user whose legacy token is ``TOKEN``."""
    port = free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        # Label Studio refuses ML backends (and the webhooks it makes for them) on loopback
        # and private addresses unless told.
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
    }
    command = [
        str(LABEL_STUDIO), "start", "--no-browser", "--internal-host", "127.0.0.1",
        "--port", str(port), "--username", "labeller@example.com", "--password", "labeller-pw-1",
        "--user-token", TOKEN, "--enable-legacy-api-token",
    ]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 900
        while True:
            assert process.poll() is None, log.read_text()[-4000:]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"Label Studio did not start in 900 s:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_label_studio_asks_our_backend_for_an_interactive_mask(checkpoint, tmp_path):
    width, height = 160, 120
    with label_studio(tmp_path / "label-studio", tmp_path / "label-studio.log") as studio:
        api = httpx.Client(
            base_url=studio, headers={"Authorization": f"Token {TOKEN}"}, timeout=120
        )
        # The service reads the images with a personal access token, as 1.15+ users have.
        personal = api.post("/api/token/")
        assert personal.status_code == 201, personal.text
        service = ServeProcess(
            checkpoint,
            tmp_path / "serve.log",
            REPVIT_SAM_LABEL_STUDIO_URL=studio,
            REPVIT_SAM_LABEL_STUDIO_API_KEY=personal.json()["token"],
        )
        service.start()
        try:
            service.wait_ready()
            project = api.post("/api/projects", json={"title": "SAM", "label_config": BRUSH_CONFIG})
            assert project.status_code == 201, project.text
            project_id = project.json()["id"]
            files = {"file": ("cells.png", encode(make_image(width, height)), "image/png")}
            imported = api.post(f"/api/projects/{project_id}/import", files=files)
            assert imported.status_code == 201, imported.text
            (task,) = api.get("/api/tasks", params={"project": project_id}).json()["tasks"]
            assert task["data"]["image"].startswith("/data/upload/")
            backend = api.post(
                "/api/ml",
                json={
                    "project": project_id,
                    "title": "RepViT-SAM",
                    "url": f"{service.base}/label-studio",
                    "is_interactive": True,
                },
            )
            assert backend.status_code == 201, backend.text
            context = {"result": [click(37.5, 37.5, width, height)]}
            answer = api.post(
                f"/api/ml/{backend.json()['id']}/interactive-annotating",
                json={"task": task["id"], "context": context},
            )
            assert answer.status_code == 200, answer.text
            assert "errors" not in answer.json(), (answer.json(), service.output()[-3000:])
            prediction = answer.json()["data"]
            (region,) = prediction["result"]
            assert region["type"] == "brushlabels" and region["from_name"] == "tag"
            rgba = decode_rle(region["value"]["rle"]).reshape(height, width, 4)
            assert np.array_equal(rgba[..., 3] > 0, rgba[..., 0] > 0)
            assert prediction["model_version"].startswith("repvit-sam-")
        finally:
            service.stop()
